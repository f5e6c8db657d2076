//! Following kernel structures: the current task's files, a file's path,
//! a dentry's name and parent, a mount's parent. Every offset comes from
//! `LAYOUT`, which the daemon reads from the running kernel's BTF; every
//! read is a `bpf_probe_read_kernel` that yields 0 when it fails.

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::bpf_get_current_task};
use sentinel_common::{config, layout};

use crate::filter::config as config_value;
use crate::maps::LAYOUT;

#[inline(always)]
pub fn read<T: Copy + Default>(addr: u64) -> T {
    if addr == 0 {
        return T::default();
    }
    unsafe { bpf_probe_read_kernel(addr as *const T) }.unwrap_or_default()
}

/// Argument `n` of an LSM hook as a plain number. BTF-typed hooks hand
/// their arguments over as typed pointers, and the verifier refuses
/// arithmetic with the daemon's (variable) offsets on those; read through
/// the helper, they are just numbers.
#[inline(always)]
pub fn lsm_arg(ctx: &aya_ebpf::programs::LsmContext, n: usize) -> u64 {
    use aya_ebpf::EbpfContext;
    let args = ctx.as_ptr() as u64;
    read::<u64>(args + 8 * n as u64)
}

/// Reads a kernel pointer (as a number; 0 when unreadable).
#[inline(always)]
pub fn ptr(addr: u64) -> u64 {
    read::<u64>(addr)
}

/// The member offsets a resolution needs.
pub struct Layout {
    pub task_files: u64,
    pub task_fs: u64,
    pub files_fdt: u64,
    pub fdtable_fd: u64,
    pub fdtable_max_fds: u64,
    pub file_path: u64,
    pub file_flags: u64,
    pub path_mnt: u64,
    pub path_dentry: u64,
    pub dentry_parent: u64,
    pub dentry_name_len: u64,
    pub dentry_name_ptr: u64,
    pub dentry_inode: u64,
    pub inode_ino: u64,
    pub inode_nlink: u64,
    pub sb_dev: u64,
    pub mount_mnt: u64,
    pub mount_parent: u64,
    pub mount_mountpoint: u64,
    pub vfsmount_root: u64,
    pub vfsmount_sb: u64,
    pub fs_pwd: u64,
    pub bprm_file: u64,
    pub bprm_filename: u64,
}

#[inline(always)]
fn at(index: u32) -> u64 {
    LAYOUT.get(index).copied().unwrap_or(0)
}

impl Layout {
    /// The layout, once the daemon has written it.
    #[inline(always)]
    pub fn load() -> Option<Layout> {
        if config_value(config::LAYOUT_READY) == 0 {
            return None;
        }
        Some(Layout {
            task_files: at(layout::TASK_FILES),
            task_fs: at(layout::TASK_FS),
            files_fdt: at(layout::FILES_FDT),
            fdtable_fd: at(layout::FDTABLE_FD),
            fdtable_max_fds: at(layout::FDTABLE_MAX_FDS),
            file_path: at(layout::FILE_PATH),
            file_flags: at(layout::FILE_FLAGS),
            path_mnt: at(layout::PATH_MNT),
            path_dentry: at(layout::PATH_DENTRY),
            dentry_parent: at(layout::DENTRY_PARENT),
            dentry_name_len: at(layout::DENTRY_NAME_LEN),
            dentry_name_ptr: at(layout::DENTRY_NAME_PTR),
            dentry_inode: at(layout::DENTRY_INODE),
            inode_ino: at(layout::INODE_INO),
            inode_nlink: at(layout::INODE_NLINK),
            sb_dev: at(layout::SB_DEV),
            mount_mnt: at(layout::MOUNT_MNT),
            mount_parent: at(layout::MOUNT_PARENT),
            mount_mountpoint: at(layout::MOUNT_MOUNTPOINT),
            vfsmount_root: at(layout::VFSMOUNT_ROOT),
            vfsmount_sb: at(layout::VFSMOUNT_SB),
            fs_pwd: at(layout::FS_PWD),
            bprm_file: at(layout::BPRM_FILE),
            bprm_filename: at(layout::BPRM_FILENAME),
        })
    }

    /// The `struct file` behind one of the current task's descriptors.
    #[inline(always)]
    pub fn file_of_fd(&self, fd: i32) -> u64 {
        if fd < 0 {
            return 0;
        }
        let task = unsafe { bpf_get_current_task() };
        let files = ptr(task + self.task_files);
        let fdt = ptr(files + self.files_fdt);
        if fdt == 0 {
            return 0;
        }
        let max: u32 = read(fdt + self.fdtable_max_fds);
        if fd as u32 >= max {
            return 0;
        }
        let array = ptr(fdt + self.fdtable_fd);
        if array == 0 {
            return 0;
        }
        ptr(array + 8 * fd as u64)
    }

    /// `(vfsmount, dentry)` of a `struct path` at `path`.
    #[inline(always)]
    pub fn path_at(&self, path: u64) -> (u64, u64) {
        if path == 0 {
            return (0, 0);
        }
        (ptr(path + self.path_mnt), ptr(path + self.path_dentry))
    }

    /// `(vfsmount, dentry)` of a file.
    #[inline(always)]
    pub fn file_path(&self, file: u64) -> (u64, u64) {
        if file == 0 {
            return (0, 0);
        }
        self.path_at(file + self.file_path)
    }

    /// The current task's working directory.
    #[inline(always)]
    pub fn cwd(&self) -> (u64, u64) {
        let task = unsafe { bpf_get_current_task() };
        let fs = ptr(task + self.task_fs);
        if fs == 0 {
            return (0, 0);
        }
        self.path_at(fs + self.fs_pwd)
    }

    /// The kernel `dev_t` of the file system a vfsmount shows.
    #[inline(always)]
    pub fn dev_of_mount(&self, vfsmount: u64) -> u32 {
        let sb = ptr(vfsmount + self.vfsmount_sb);
        read(sb + self.sb_dev)
    }

    /// A dentry's inode number (0 for a negative dentry).
    #[inline(always)]
    pub fn ino_of(&self, dentry: u64) -> u64 {
        let inode = ptr(dentry + self.dentry_inode);
        read(inode + self.inode_ino)
    }
}
