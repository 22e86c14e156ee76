//! Local Azure IoT Hub emulator (a faithful fake: Azure cannot run here).
