"""The service side of the device VM test, with Microsoft's official service SDK
(azure-iot-hub), the way an operator's tooling would drive a fleet.

    device_service.py twin DEVICE           prints the twin's reported properties (JSON)
    device_service.py invoke DEVICE METHOD  invokes a direct method, prints {status, payload}

Environment: HUB_SERVICE_CS (the hub's service connection string), HUB_CA (the CA bundle
the hub's certificate chains to), HUB_ADDRESSES (optional, "name=ip,..." resolved without
DNS, like the device's `hosts` map: the development hub's name is not in any DNS).
"""

import json
import os
import socket
import sys

from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod


def map_addresses():
    mapping = {}
    for entry in filter(None, os.environ.get("HUB_ADDRESSES", "").split(",")):
        name, address = entry.split("=", 1)
        mapping[name] = address
    original = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        return original(mapping.get(host, host), *args, **kwargs)

    socket.getaddrinfo = resolve


def main():
    map_addresses()
    os.environ["REQUESTS_CA_BUNDLE"] = os.environ["HUB_CA"]
    registry = IoTHubRegistryManager.from_connection_string(os.environ["HUB_SERVICE_CS"])
    command, device = sys.argv[1], sys.argv[2]
    if command == "twin":
        twin = registry.get_twin(device)
        print(json.dumps(twin.properties.reported))
    elif command == "invoke":
        method = CloudToDeviceMethod(
            method_name=sys.argv[3], payload={}, response_timeout_in_seconds=30
        )
        result = registry.invoke_device_method(device, method)
        print(json.dumps({"status": result.status, "payload": result.payload}))
    else:
        sys.exit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
