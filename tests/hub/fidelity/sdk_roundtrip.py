"""Fidelity test: Microsoft's official Python SDKs against the testudo hub emulator.

Environment (set by tests/hub/tests/official_sdk.rs):
  HUB_DEVICE_CS   device connection string (HostName=localhost;DeviceId=...;SharedAccessKey=...)
  HUB_SERVICE_CS  service connection string (HostName=localhost:PORT;SharedAccessKeyName=iothubowner;...)
  HUB_CA          path to the emulator's ca.pem
The device SDK always dials port 8883, so the emulator must listen there.
Prints "N passed, 0 failed" and exits 0 when every check holds.
"""

import os
import sys
import time

from azure.iot.device import IoTHubDeviceClient, MethodResponse, Message
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod, Twin, TwinProperties

CHECKS = []


def check(name, condition, detail=""):
    CHECKS.append((name, bool(condition)))
    print(("ok   " if condition else "FAIL ") + name + ("" if condition else ": " + str(detail)), flush=True)


def wait_for(predicate, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def main():
    ca = open(os.environ["HUB_CA"]).read()
    # The service SDK uses requests: trust the emulator's CA for HTTPS.
    os.environ["REQUESTS_CA_BUNDLE"] = os.environ["HUB_CA"]
    device = IoTHubDeviceClient.create_from_connection_string(
        os.environ["HUB_DEVICE_CS"], server_verification_cert=ca
    )
    device_id = os.environ["HUB_DEVICE_CS"].split("DeviceId=")[1].split(";")[0]
    registry = IoTHubRegistryManager.from_connection_string(os.environ["HUB_SERVICE_CS"])

    patches = []

    def on_patch(patch):
        # The SDK also raises an artificial patch (the whole desired document) after it
        # enables patches and GETs the twin; the service's change must still arrive.
        patches.append(patch)

    def on_method(request):
        payload = {"echo": request.payload, "method": request.name}
        device.send_method_response(MethodResponse.create_from_method_request(request, 201, payload))

    device.on_twin_desired_properties_patch_received = on_patch
    device.on_method_request_received = on_method
    device.connect()
    check("device connects with SAS", device.connected)

    twin = device.get_twin()
    check("device reads its full twin", "desired" in twin and "reported" in twin, twin)
    start_version = twin["reported"]["$version"]

    device.patch_twin_reported_properties({"firmware": "1.2.3", "nested": {"a": 1}})
    twin = device.get_twin()
    check(
        "reported patch lands with a new $version",
        twin["reported"].get("firmware") == "1.2.3" and twin["reported"]["$version"] == start_version + 1,
        twin,
    )

    service_twin = registry.get_twin(device_id)
    check("service reads the reported property", service_twin.properties.reported.get("firmware") == "1.2.3")
    check("service twin carries an etag", bool(service_twin.etag))

    updated = registry.update_twin(
        device_id, Twin(properties=TwinProperties(desired={"telemetryInterval": 5})), service_twin.etag
    )
    check("service updates desired with If-Match etag", updated.properties.desired.get("telemetryInterval") == 5)
    check("device receives the desired patch", wait_for(lambda: any("telemetryInterval" in p for p in patches)), patches)
    pushed = [p for p in patches if "telemetryInterval" in p]
    check(
        "desired patch carries value and $version",
        bool(pushed) and pushed[-1]["telemetryInterval"] == 5 and pushed[-1]["$version"] == updated.properties.desired["$version"],
        patches,
    )

    stale = False
    try:
        registry.update_twin(device_id, Twin(properties=TwinProperties(desired={"x": 1})), service_twin.etag)
    except Exception:  # msrest HttpOperationError: 412 Precondition Failed
        stale = True
    check("stale etag is refused", stale)

    result = registry.invoke_device_method(
        device_id, CloudToDeviceMethod(method_name="reboot", payload={"delay": 3}, response_timeout_in_seconds=10)
    )
    check("service invokes a direct method", result.status == 201, result)
    check("method payload round-trips", result.payload == {"echo": {"delay": 3}, "method": "reboot"}, result.payload)

    device.send_message(Message('{"temp": 21.5}', content_encoding="utf-8", content_type="application/json"))
    check("device sends telemetry (PUBACK received)", True)

    device.shutdown()

    # Registry CRUD through the service SDK's msrest models.
    import base64
    primary = base64.b64encode(b"p" * 32).decode()
    secondary = base64.b64encode(b"s" * 32).decode()
    created = registry.create_device_with_sas("sdk-created", primary, secondary, "enabled")
    check("service creates a SAS device", created.device_id == "sdk-created" and created.authentication.symmetric_key.primary_key == primary, created)
    fetched = registry.get_device("sdk-created")
    check("service reads the device back", fetched.status == "enabled" and fetched.etag == created.etag, fetched)
    second = IoTHubDeviceClient.create_from_symmetric_key(
        symmetric_key=primary, hostname=os.environ["HUB_DEVICE_CS"].split("HostName=")[1].split(";")[0],
        device_id="sdk-created", server_verification_cert=ca,
    )
    second.connect()
    check("created device connects with its key", second.connected)
    second.shutdown()
    registry.delete_device("sdk-created")
    gone = False
    try:
        registry.get_device("sdk-created")
    except Exception:  # msrest HttpOperationError 404
        gone = True
    check("service deletes the device", gone)

    passed = sum(1 for _, ok in CHECKS if ok)
    failed = len(CHECKS) - passed
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
