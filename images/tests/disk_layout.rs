//! Promise: disk.img is a valid GPT disk (checked by sgdisk) with esp, rootfs-a, rootfs-b
//! and data; the ESP holds GRUB, its script and a grubenv making A primary; slot A holds
//! exactly rootfs.img; slot B is empty; data is ext4.

mod common;

use std::io::{Read, Seek, SeekFrom};

use testudo_images::disk::{DiskLayout, DATA_LABEL, ROOTFS_A_LABEL, ROOTFS_B_LABEL};

#[test]
fn gpt_esp_slots_and_data_are_laid_out_as_promised() {
    let fx = common::fixture();
    let tools = testudo_images::HostTools::new();
    testudo_images::build(&fx.request, &tools).expect("build");
    let disk = fx.request.out_dir.join("disk.img");
    let disk_s = common::path_str(&disk);
    let verify = common::run("sgdisk", &["-v", disk_s]);
    assert!(verify.contains("No problems found"), "{verify}");
    let table = common::run("sgdisk", &["-p", disk_s]);
    for name in ["esp", "rootfs-a", "rootfs-b", "data"] {
        assert!(table.contains(name), "{name} not in {table}");
    }
    assert!(table.contains("EF00"), "ESP type: {table}");

    let layout = DiskLayout::for_board(
        &fx.request.plan.compatible,
        &fx.request.plan.board.partitions,
    );
    let esp_offset = layout.partitions[0].offset;
    let image = format!("{disk_s}@@{esp_offset}");
    let listing = common::run("mdir", &["-i", &image, "-b", "::/EFI/BOOT"]);
    assert!(listing.contains("BOOTX64.EFI"), "{listing}");
    let env = common::run("mtype", &["-i", &image, "::/EFI/testudo/grubenv"]);
    assert!(
        env.starts_with("# GRUB Environment Block\nORDER=A B\nA_OK=1\nA_TRY=0\nB_OK=0\n"),
        "{env}"
    );
    let cfg = common::run("mtype", &["-i", &image, "::/EFI/testudo/grub.cfg"]);
    assert!(cfg.contains("load_env -f /EFI/testudo/grubenv"));

    let mut file = std::fs::File::open(&disk).unwrap();
    let rootfs = std::fs::read(fx.request.out_dir.join("rootfs.img")).unwrap();
    let a = layout.partition(ROOTFS_A_LABEL).unwrap();
    let mut slot_a = vec![0u8; rootfs.len()];
    file.seek(SeekFrom::Start(a.offset)).unwrap();
    file.read_exact(&mut slot_a).unwrap();
    assert!(slot_a == rootfs, "slot A differs from rootfs.img");
    let b = layout.partition(ROOTFS_B_LABEL).unwrap();
    let mut head = vec![0u8; 1 << 20];
    file.seek(SeekFrom::Start(b.offset)).unwrap();
    file.read_exact(&mut head).unwrap();
    assert!(head.iter().all(|x| *x == 0), "slot B must start empty");
    let data = layout.partition(DATA_LABEL).unwrap();
    let mut magic = [0u8; 2];
    file.seek(SeekFrom::Start(data.offset + 1080)).unwrap();
    file.read_exact(&mut magic).unwrap();
    assert_eq!(magic, [0x53, 0xEF], "ext4 superblock magic");
}
