//! The data partition: an empty ext4 filesystem labelled `data`, made reproducibly
//! (`mkfs.ext4` with a generated `mke2fs.conf` instead of the host's, a UUID and directory
//! hash seed derived from the system, and `E2FSPROGS_FAKE_TIME` set to the build clock).
//! `testudo-init` mounts it read-write at `/data`.

use std::fs;
use std::path::Path;

use crate::error::{ImageError, Result};
use crate::gpt::Guid;
use crate::reproducible::SourceDateEpoch;
use crate::tool::{path_arg, ToolCall, ToolRunner};

/// Filesystem label of the data partition.
pub const DATA_FS_LABEL: &str = testudo_plan::layout::partitions::DATA;

/// The feature set, pinned here so the host's `/etc/mke2fs.conf` does not leak in.
const MKE2FS_CONF: &str = "[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384
[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
";

/// Makes an empty ext4 image of `size` bytes at `out`. `seed` determines its UUID.
pub fn build_data_fs(
    tools: &dyn ToolRunner,
    seed: &str,
    size: u64,
    epoch: SourceDateEpoch,
    work: &Path,
    out: &Path,
) -> Result<()> {
    fs::create_dir_all(work).map_err(ImageError::write(work))?;
    let conf = work.join("mke2fs.conf");
    fs::write(&conf, MKE2FS_CONF).map_err(ImageError::write(&conf))?;
    let file = fs::File::create(out).map_err(ImageError::write(out))?;
    file.set_len(size).map_err(ImageError::write(out))?;
    drop(file);
    let uuid = Guid::derived(seed, "data-fs").to_string().to_lowercase();
    let hash_seed = Guid::derived(seed, "data-fs-hash")
        .to_string()
        .to_lowercase();
    tools.run(
        &ToolCall::new("mkfs.ext4", "formatting the data partition")
            .env("MKE2FS_CONFIG", conf.to_string_lossy())
            .env("E2FSPROGS_FAKE_TIME", epoch.seconds.to_string())
            .args([
                "-q",
                "-F",
                "-t",
                "ext4",
                "-T",
                "ext4",
                "-L",
                DATA_FS_LABEL,
                "-m",
                "0",
                "-U",
            ])
            .arg(uuid)
            .arg("-E")
            .arg(format!(
                "hash_seed={hash_seed},lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0"
            ))
            .arg(path_arg(out)),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reproducible::EpochSource;
    use crate::tool::fake::RecordingTools;

    #[test]
    fn host_config_and_clock_do_not_leak_in() {
        let dir = tempfile::tempdir().unwrap();
        let tools = RecordingTools::new(|_| Ok(Vec::new()));
        let epoch = SourceDateEpoch {
            seconds: 77,
            source: EpochSource::Environment,
        };
        let out = dir.path().join("data.img");
        build_data_fs(&tools, "sys", 1 << 20, epoch, dir.path(), &out).unwrap();
        let call = &tools.calls()[0];
        let env: Vec<_> = call.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(env, ["MKE2FS_CONFIG", "E2FSPROGS_FAKE_TIME"]);
        assert_eq!(call.env[1].1, "77");
        assert_eq!(fs::metadata(&out).unwrap().len(), 1 << 20);
        let again = RecordingTools::new(|_| Ok(Vec::new()));
        build_data_fs(&again, "sys", 1 << 20, epoch, dir.path(), &out).unwrap();
        assert_eq!(
            again.calls()[0].args,
            call.args,
            "same seed, same arguments"
        );
    }
}
