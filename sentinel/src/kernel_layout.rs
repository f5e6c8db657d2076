//! The running kernel's structure layout, read from its BTF
//! (/sys/kernel/btf/vmlinux): the byte offsets the eBPF programs follow to
//! resolve the object of a call (task → files → file → path → dentry →
//! mount), and the parameter counts of the LSM hooks they attach to.
//!
//! Offsets differ between kernel builds, and the programs are not built
//! with CO-RE relocations, so the daemon reads them here and writes them
//! into the `LAYOUT` map before anything is attached. Only the parts of
//! BTF this needs are parsed: named structs and unions with their members
//! (anonymous members are searched through), typedefs and qualifiers to
//! see through, and function prototypes.

use std::collections::HashMap;
use std::path::Path;

use sentinel_common::layout;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum LayoutError {
    #[error(
        "cannot read kernel BTF at {path}: {source}; this kernel needs CONFIG_DEBUG_INFO_BTF=y"
    )]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel BTF is malformed: {0}")]
    Malformed(&'static str),
    #[error("kernel BTF has no {0}: this kernel's layout is not supported")]
    Missing(String),
}

const BTF_MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Member {
    name: u32,
    type_id: u32,
    /// Bits from the start of the enclosing struct.
    bit_offset: u32,
}

#[derive(Debug, Clone)]
enum Type {
    /// Struct or union.
    Composite {
        members: Vec<Member>,
    },
    /// typedef, const, volatile, restrict, type tag: see through.
    Alias {
        target: u32,
    },
    Func {
        proto: u32,
    },
    FuncProto {
        params: u32,
    },
    Other,
}

/// The parsed parts of a BTF blob.
pub struct Btf {
    types: Vec<Type>,
    names: Vec<u32>,
    strings: Vec<u8>,
    /// Struct name → type id (the first with that name).
    structs: HashMap<String, u32>,
    funcs: HashMap<String, u32>,
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, LayoutError> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(LayoutError::Malformed("truncated type section"))
}

impl Btf {
    pub fn from_sys_fs() -> Result<Btf, LayoutError> {
        Btf::from_file(Path::new("/sys/kernel/btf/vmlinux"))
    }

    pub fn from_file(path: &Path) -> Result<Btf, LayoutError> {
        let data = std::fs::read(path).map_err(|source| LayoutError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Btf::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Btf, LayoutError> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != BTF_MAGIC {
            return Err(LayoutError::Malformed("bad magic (not little-endian BTF)"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let types_data = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(LayoutError::Malformed("type section out of bounds"))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(LayoutError::Malformed("string section out of bounds"))?
            .to_vec();
        // Type id 0 is `void`.
        let mut types = vec![Type::Other];
        let mut names = vec![0];
        let mut at = 0;
        while at < types_data.len() {
            let name = u32_at(types_data, at)?;
            let info = u32_at(types_data, at + 4)?;
            let size_or_type = u32_at(types_data, at + 8)?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let ty = match kind {
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let m = at + 12 * i;
                        let offset = u32_at(types_data, m + 8)?;
                        members.push(Member {
                            name: u32_at(types_data, m)?,
                            type_id: u32_at(types_data, m + 4)?,
                            bit_offset: if kind_flag {
                                offset & 0xff_ffff
                            } else {
                                offset
                            },
                        });
                    }
                    at += 12 * vlen;
                    Type::Composite { members }
                }
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    Type::Alias {
                        target: size_or_type,
                    }
                }
                KIND_FUNC => Type::Func {
                    proto: size_or_type,
                },
                KIND_FUNC_PROTO => {
                    at += 8 * vlen;
                    Type::FuncProto {
                        params: vlen as u32,
                    }
                }
                KIND_INT | KIND_VAR | KIND_DECL_TAG => {
                    at += 4;
                    Type::Other
                }
                KIND_ARRAY => {
                    at += 12;
                    Type::Other
                }
                KIND_ENUM => {
                    at += 8 * vlen;
                    Type::Other
                }
                KIND_DATASEC | KIND_ENUM64 => {
                    at += 12 * vlen;
                    Type::Other
                }
                KIND_PTR | KIND_FWD | KIND_FLOAT => Type::Other,
                _ => return Err(LayoutError::Malformed("unknown type kind")),
            };
            types.push(ty);
            names.push(name);
        }
        let mut btf = Btf {
            types,
            names,
            strings,
            structs: HashMap::new(),
            funcs: HashMap::new(),
        };
        for id in 1..btf.types.len() as u32 {
            let name = btf.name(btf.names[id as usize]).to_string();
            if name.is_empty() {
                continue;
            }
            match btf.types[id as usize] {
                Type::Composite { .. } => {
                    btf.structs.entry(name).or_insert(id);
                }
                Type::Func { .. } => {
                    btf.funcs.entry(name).or_insert(id);
                }
                _ => {}
            }
        }
        Ok(btf)
    }

    fn name(&self, offset: u32) -> &str {
        let rest = self.strings.get(offset as usize..).unwrap_or_default();
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Sees through typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(Type::Alias { target }) => id = *target,
                _ => break,
            }
        }
        id
    }

    /// Byte offset and type of `member` in the struct or union `id`,
    /// looking into anonymous members; `None` if absent or a bitfield.
    fn member(&self, id: u32, member: &str) -> Option<(u32, u32)> {
        let Some(Type::Composite { members }) = self.types.get(self.resolve(id) as usize) else {
            return None;
        };
        for m in members {
            let name = self.name(m.name);
            if name == member {
                return (m.bit_offset % 8 == 0).then_some((m.bit_offset / 8, m.type_id));
            }
            if name.is_empty() {
                if let Some((inner, ty)) = self.member(m.type_id, member) {
                    return Some((m.bit_offset / 8 + inner, ty));
                }
            }
        }
        None
    }

    /// Byte offset of a member path such as `d_name.name` in `structure`.
    pub fn offset(&self, structure: &str, path: &str) -> Result<u64, LayoutError> {
        let missing = || LayoutError::Missing(format!("struct {structure} member {path}"));
        let mut id = *self.structs.get(structure).ok_or_else(missing)?;
        let mut total = 0u64;
        for part in path.split('.') {
            let (offset, ty) = self.member(id, part).ok_or_else(missing)?;
            total += u64::from(offset);
            id = ty;
        }
        Ok(total)
    }

    /// The number of parameters of a kernel function (e.g. an LSM hook's
    /// `bpf_lsm_*` stub), if BTF describes it.
    pub fn param_count(&self, func: &str) -> Option<usize> {
        let id = *self.funcs.get(func)?;
        let Type::Func { proto } = self.types[id as usize] else {
            return None;
        };
        match self.types.get(proto as usize)? {
            Type::FuncProto { params } => Some(*params as usize),
            _ => None,
        }
    }
}

/// Every `LAYOUT` entry, in index order.
pub fn read(btf: &Btf) -> Result<[u64; layout::LEN as usize], LayoutError> {
    let mut out = [0u64; layout::LEN as usize];
    let entries: [(u32, &str, &str); layout::LEN as usize] = [
        (layout::TASK_FILES, "task_struct", "files"),
        (layout::TASK_FS, "task_struct", "fs"),
        (layout::FILES_FDT, "files_struct", "fdt"),
        (layout::FDTABLE_FD, "fdtable", "fd"),
        (layout::FDTABLE_MAX_FDS, "fdtable", "max_fds"),
        (layout::FILE_PATH, "file", "f_path"),
        (layout::FILE_FLAGS, "file", "f_flags"),
        (layout::PATH_MNT, "path", "mnt"),
        (layout::PATH_DENTRY, "path", "dentry"),
        (layout::DENTRY_PARENT, "dentry", "d_parent"),
        (layout::DENTRY_NAME_LEN, "dentry", "d_name.len"),
        (layout::DENTRY_NAME_PTR, "dentry", "d_name.name"),
        (layout::DENTRY_INODE, "dentry", "d_inode"),
        (layout::INODE_INO, "inode", "i_ino"),
        (layout::INODE_NLINK, "inode", "__i_nlink"),
        (layout::SB_DEV, "super_block", "s_dev"),
        (layout::MOUNT_MNT, "mount", "mnt"),
        (layout::MOUNT_PARENT, "mount", "mnt_parent"),
        (layout::MOUNT_MOUNTPOINT, "mount", "mnt_mountpoint"),
        (layout::VFSMOUNT_ROOT, "vfsmount", "mnt_root"),
        (layout::VFSMOUNT_SB, "vfsmount", "mnt_sb"),
        (layout::FS_PWD, "fs_struct", "pwd"),
        (layout::BPRM_FILE, "linux_binprm", "file"),
        (layout::BPRM_FILENAME, "linux_binprm", "filename"),
        (layout::TASK_TGID, "task_struct", "tgid"),
        (layout::FILE_PRIVATE_DATA, "file", "private_data"),
        (layout::PID_NUMBERS, "pid", "numbers"),
        (layout::FILE_INODE, "file", "f_inode"),
        (layout::INODE_SB, "inode", "i_sb"),
        (layout::SB_MAGIC, "super_block", "s_magic"),
        (layout::PROC_INODE_PID, "proc_inode", "pid"),
        (layout::PROC_INODE_VFS, "proc_inode", "vfs_inode"),
    ];
    for (index, structure, member) in entries {
        out[index as usize] = btf.offset(structure, member)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_kernels_layout() {
        // Every machine this project runs on has kernel BTF.
        let btf = Btf::from_sys_fs().expect("kernel BTF");
        let offsets = read(&btf).expect("every member is present");
        // `struct path` is { vfsmount *mnt; dentry *dentry; } everywhere.
        assert_eq!(offsets[layout::PATH_MNT as usize], 0);
        assert_eq!(offsets[layout::PATH_DENTRY as usize], 8);
        // d_name.name sits 8 bytes after d_name's hash_len, and len is the
        // upper half of hash_len on little-endian machines.
        let name = offsets[layout::DENTRY_NAME_PTR as usize];
        let len = offsets[layout::DENTRY_NAME_LEN as usize];
        assert_eq!(name, len + 4);
        assert!(offsets[layout::MOUNT_MNT as usize] > 0);
        // LSM stubs carry their parameter counts.
        assert_eq!(btf.param_count("bpf_lsm_file_open"), Some(1));
        assert_eq!(btf.param_count("bpf_lsm_path_unlink"), Some(2));
        assert_eq!(btf.param_count("no_such_function_here"), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Btf::parse(b"").is_err());
        assert!(Btf::parse(&[
            0x9f, 0xeb, 1, 0, 24, 0, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ])
        .is_err());
    }
}
