"""Fidelity test: azure-iot-device's ProvisioningDeviceClient (DPS, symmetric key over MQTT)
against the testudo hub emulator, then the provisioned device connects to the assigned hub.

Environment (set by tests/hub/tests/official_sdk.rs):
  HUB_ID_SCOPE, HUB_REGISTRATION_ID, HUB_ENROLLMENT_KEY, HUB_HOST, HUB_CA
The SDK dials port 8883 on HUB_HOST. Prints "N passed, M failed"; exit 0 when all pass.
"""

import os
import sys

from azure.iot.device import IoTHubDeviceClient, ProvisioningDeviceClient

CHECKS = []


def check(name, condition, detail=""):
    CHECKS.append(bool(condition))
    print(("ok   " if condition else "FAIL ") + name + ("" if condition else ": " + str(detail)), flush=True)


def main():
    ca = open(os.environ["HUB_CA"]).read()
    registration_id = os.environ["HUB_REGISTRATION_ID"]
    key = os.environ["HUB_ENROLLMENT_KEY"]
    provisioning = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=os.environ["HUB_HOST"],
        registration_id=registration_id,
        id_scope=os.environ["HUB_ID_SCOPE"],
        symmetric_key=key,
        server_verification_cert=ca,
    )
    result = provisioning.register()
    check("registration is assigned", result.status == "assigned", result)
    state = result.registration_state
    check("assigned hub is the emulator", state is not None and state.assigned_hub == os.environ["HUB_HOST"], state)
    check("device id is the registration id", state is not None and state.device_id == registration_id, state)

    device = IoTHubDeviceClient.create_from_symmetric_key(
        symmetric_key=key, hostname=state.assigned_hub, device_id=state.device_id, server_verification_cert=ca
    )
    device.connect()
    check("provisioned device connects", device.connected)
    device.patch_twin_reported_properties({"provisioned": True})
    twin = device.get_twin()
    check("provisioned device reports", twin["reported"].get("provisioned") is True, twin)
    device.shutdown()
    passed = sum(CHECKS)
    print(f"{passed} passed, {len(CHECKS) - passed} failed", flush=True)
    return 0 if passed == len(CHECKS) else 1


if __name__ == "__main__":
    sys.exit(main())
