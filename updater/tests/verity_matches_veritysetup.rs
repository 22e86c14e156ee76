//! Promise: the dm-verity hash tree and root hash testudo computes are exactly what
//! cryptsetup's `veritysetup format --no-superblock` produces (sha256, 4 KiB blocks, salt),
//! for one-, two- and three-level trees.

mod common;

use testudo_updater::verity;

#[test]
fn tree_and_root_hash_equal_veritysetup() {
    let dir = tempfile::tempdir().unwrap();
    let salt = [0x42u8; 32];
    for blocks in [2usize, 129, 16_385] {
        let data_path = common::image(
            &dir.path().join(format!("data{blocks}")),
            blocks * 4096,
            blocks as u8,
        );
        let hash_path = dir.path().join(format!("hash{blocks}"));
        let data = std::fs::read(&data_path).unwrap();
        let ours = verity::compute(&data[..], data.len() as u64, &salt).unwrap();
        let output = common::run(
            "veritysetup",
            &[
                &"format",
                &"--no-superblock",
                &"--hash=sha256",
                &"--data-block-size=4096",
                &"--hash-block-size=4096",
                &format!("--salt={}", hex::encode(salt)),
                &data_path,
                &hash_path,
            ],
        );
        common::assert_success("veritysetup format", &output);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let root = stdout
            .lines()
            .find_map(|l| l.strip_prefix("Root hash:"))
            .expect("veritysetup prints the root hash")
            .trim()
            .to_string();
        assert_eq!(root, hex::encode(ours.root_hash), "{blocks} blocks");
        assert_eq!(
            std::fs::read(&hash_path).unwrap(),
            ours.bytes,
            "{blocks} blocks: tree bytes differ"
        );
        assert_eq!(
            ours.bytes.len() as u64,
            verity::tree_size(data.len() as u64)
        );
    }
}
