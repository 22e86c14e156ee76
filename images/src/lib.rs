//! Image builder: reproducible rootfs, disk images and update bundles.
