//! The squashfs 4.0 on-disk structures this writer emits, one struct per
//! record, each serialised little-endian by its `write` method.
//!
//! Field meanings follow the kernel's `fs/squashfs/squashfs_fs.h` and the
//! squashfs-tools-ng `doc/format.txt` (cited below as "format.txt" with its
//! section numbers). Only the writer side exists: nothing here parses.

/// "hsqs" read as a little-endian u32 (format.txt 3).
pub const MAGIC: u32 = 0x7371_7368;
pub const VERSION_MAJOR: u16 = 4;
pub const VERSION_MINOR: u16 = 0;
/// Bytes of the superblock at offset 0 (format.txt 3).
pub const SUPERBLOCK_LEN: usize = 96;
/// Uncompressed bytes of one metadata block (format.txt 2.2).
pub const METADATA_SIZE: usize = 8192;
/// Set in a metadata block's u16 header when the block is stored raw.
pub const METADATA_UNCOMPRESSED: u16 = 0x8000;
/// Set in a data block or fragment size word when the block is stored raw
/// (format.txt 4 and 7).
pub const DATA_UNCOMPRESSED: u32 = 1 << 24;
/// Images are padded to a multiple of this many bytes, the device block size
/// the kernel needs (format.txt 2, squashfs-tools' `-nopad` default).
pub const DEVICE_BLOCK: u64 = 4096;
/// "Not present" for an optional table's start and for u32 indexes
/// (`SQUASHFS_INVALID_BLK`, `SQUASHFS_INVALID_FRAG`, `SQUASHFS_INVALID_XATTR`).
pub const INVALID_TABLE: u64 = u64::MAX;
pub const INVALID_INDEX: u32 = u32::MAX;
/// Most entries one directory header may cover (format.txt 6).
pub const DIR_HEADER_MAX_ENTRIES: usize = 256;
/// Longest name the kernel accepts (`SQUASHFS_NAME_LEN`), in bytes.
pub const MAX_NAME: usize = 256;
/// The kernel reports a directory 3 bytes larger than its listing: it invents
/// "." and ".." at positions 0 and 1 (format.txt 5.2).
pub const DIR_SIZE_BIAS: u32 = 3;

/// Compressor ids of the superblock (format.txt 3).
pub const COMP_GZIP: u16 = 1;
pub const COMP_XZ: u16 = 4;
pub const COMP_ZSTD: u16 = 6;

/// Superblock flags (format.txt 3). The kernel only tests `COMP_OPTS`.
pub const FLAG_ALWAYS_FRAGMENTS: u16 = 0x0020;
pub const FLAG_DUPLICATES: u16 = 0x0040;
pub const FLAG_NO_XATTRS: u16 = 0x0200;
pub const FLAG_COMP_OPTS: u16 = 0x0400;

/// Inode types (format.txt 5.1). Extended types are the basic type + 7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum InodeType {
    Dir = 1,
    File = 2,
    Symlink = 3,
    BlockDev = 4,
    CharDev = 5,
    Fifo = 6,
    Socket = 7,
}

impl InodeType {
    pub fn basic(self) -> u16 {
        self as u16
    }

    pub fn extended(self) -> u16 {
        self as u16 + 7
    }
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// The superblock (format.txt 3, `struct squashfs_super_block`).
#[derive(Clone, Debug, Default)]
pub struct SuperBlock {
    /// Number of inodes in the image.
    pub inodes: u32,
    /// Creation time, seconds since the epoch.
    pub mkfs_time: u32,
    /// Data block size in bytes, a power of two 4 KiB..1 MiB.
    pub block_size: u32,
    /// Entries in the fragment table.
    pub fragments: u32,
    /// One of the `COMP_*` ids.
    pub compression: u16,
    /// log2 of `block_size`; must agree with it.
    pub block_log: u16,
    /// `FLAG_*` bits.
    pub flags: u16,
    /// Entries in the id table (at least 1: the kernel refuses 0).
    pub ids: u16,
    /// Packed [`MetaRef`] of the root directory inode.
    pub root_inode: u64,
    /// Bytes of the image before padding.
    pub bytes_used: u64,
    /// Absolute offsets of the tables; `INVALID_TABLE` when absent.
    pub id_table: u64,
    pub xattr_id_table: u64,
    pub inode_table: u64,
    pub directory_table: u64,
    pub fragment_table: u64,
    pub export_table: u64,
}

impl SuperBlock {
    pub fn to_bytes(&self) -> [u8; SUPERBLOCK_LEN] {
        let mut b = Vec::with_capacity(SUPERBLOCK_LEN);
        put32(&mut b, MAGIC);
        put32(&mut b, self.inodes);
        put32(&mut b, self.mkfs_time);
        put32(&mut b, self.block_size);
        put32(&mut b, self.fragments);
        put16(&mut b, self.compression);
        put16(&mut b, self.block_log);
        put16(&mut b, self.flags);
        put16(&mut b, self.ids);
        put16(&mut b, VERSION_MAJOR);
        put16(&mut b, VERSION_MINOR);
        for v in [
            self.root_inode,
            self.bytes_used,
            self.id_table,
            self.xattr_id_table,
            self.inode_table,
            self.directory_table,
            self.fragment_table,
            self.export_table,
        ] {
            put64(&mut b, v);
        }
        let mut out = [0u8; SUPERBLOCK_LEN];
        out.copy_from_slice(&b);
        out
    }
}

/// A reference to a metadata record: the byte offset of its (compressed)
/// metadata block from the start of its table, and the record's offset in
/// the uncompressed block. Packed as `block << 16 | offset` (format.txt 2.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetaRef {
    pub block: u64,
    pub offset: u16,
}

impl MetaRef {
    pub fn packed(self) -> u64 {
        (self.block << 16) | u64::from(self.offset)
    }
}

/// The header every inode starts with (format.txt 5.1,
/// `struct squashfs_base_inode`).
#[derive(Clone, Copy, Debug)]
pub struct InodeHeader {
    /// Basic or extended `InodeType` value.
    pub inode_type: u16,
    /// Permission bits (`0o7777`); the file type comes from `inode_type`.
    pub mode: u16,
    /// Index of the owner in the id table.
    pub uid_idx: u16,
    /// Index of the group in the id table.
    pub gid_idx: u16,
    /// Seconds since the epoch.
    pub mtime: u32,
    /// 1..=superblock `inodes`, unique per inode.
    pub inode_number: u32,
}

impl InodeHeader {
    fn write(&self, out: &mut Vec<u8>) {
        put16(out, self.inode_type);
        put16(out, self.mode);
        put16(out, self.uid_idx);
        put16(out, self.gid_idx);
        put32(out, self.mtime);
        put32(out, self.inode_number);
    }
}

/// One entry of an extended directory's index (format.txt 6.1,
/// `struct squashfs_dir_index`): where a directory header starts.
#[derive(Clone, Debug)]
pub struct DirIndex {
    /// Bytes from the listing's start to the header.
    pub index: u32,
    /// Directory-table offset of the metadata block holding the header.
    pub start: u32,
    /// The first name after the header (its length - 1 is stored).
    pub name: Vec<u8>,
}

/// Where a file's tail end lives: fragment `index`, at `offset` bytes into
/// the uncompressed fragment block (format.txt 5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragRef {
    pub index: u32,
    pub offset: u32,
}

/// The type-specific part of an inode (format.txt 5.2–5.6).
#[derive(Clone, Debug)]
pub enum InodeBody<'a> {
    /// `struct squashfs_dir_inode`: listing at most 64 KiB, no xattrs/index.
    BasicDir {
        /// Directory-table offset of the listing's first metadata block.
        start: u32,
        /// 2 + number of subdirectories.
        nlink: u32,
        /// Listing bytes + [`DIR_SIZE_BIAS`].
        size: u16,
        /// Offset of the listing in that (uncompressed) block.
        offset: u16,
        /// Inode number of the parent directory.
        parent: u32,
    },
    /// `struct squashfs_ldir_inode`, followed by its index entries.
    ExtDir {
        nlink: u32,
        size: u32,
        start: u32,
        parent: u32,
        offset: u16,
        xattr: u32,
        index: &'a [DirIndex],
    },
    /// `struct squashfs_reg_inode`: < 4 GiB, data below 4 GiB, nlink 1.
    BasicFile {
        /// Absolute offset of the first data block.
        start: u32,
        /// Tail end location, or none (`INVALID_INDEX`, offset 0).
        frag: Option<FragRef>,
        size: u32,
        /// On-disk size of each full block, `DATA_UNCOMPRESSED` if raw,
        /// 0 for a sparse (all-zero) block.
        blocks: &'a [u32],
    },
    /// `struct squashfs_lreg_inode`.
    ExtFile {
        start: u64,
        size: u64,
        /// Bytes not stored because they were in all-zero blocks.
        sparse: u64,
        nlink: u32,
        frag: Option<FragRef>,
        xattr: u32,
        blocks: &'a [u32],
    },
    /// `struct squashfs_symlink_inode`; the extended form appends `xattr`.
    Symlink {
        nlink: u32,
        target: &'a [u8],
        xattr: Option<u32>,
    },
    /// `struct squashfs_dev_inode` / `squashfs_ldev_inode`.
    Device {
        nlink: u32,
        /// Linux `new_encode_dev` number (see `encode_dev`).
        rdev: u32,
        xattr: Option<u32>,
    },
    /// `struct squashfs_ipc_inode` / `squashfs_lipc_inode` (fifo, socket).
    Ipc { nlink: u32, xattr: Option<u32> },
}

fn put_frag(out: &mut Vec<u8>, frag: Option<FragRef>) {
    let f = frag.unwrap_or(FragRef {
        index: INVALID_INDEX,
        offset: 0,
    });
    put32(out, f.index);
    put32(out, f.offset);
}

/// Serialises a whole inode: the header then the body.
pub fn write_inode(header: &InodeHeader, body: &InodeBody<'_>, out: &mut Vec<u8>) {
    header.write(out);
    match body {
        InodeBody::BasicDir { .. } | InodeBody::ExtDir { .. } => write_dir_body(body, out),
        InodeBody::BasicFile { .. } | InodeBody::ExtFile { .. } => write_file_body(body, out),
        InodeBody::Symlink {
            nlink,
            target,
            xattr,
        } => {
            put32(out, *nlink);
            put32(out, target.len() as u32);
            out.extend_from_slice(target);
            xattr.iter().for_each(|x| put32(out, *x));
        }
        InodeBody::Device { nlink, rdev, xattr } => {
            put32(out, *nlink);
            put32(out, *rdev);
            xattr.iter().for_each(|x| put32(out, *x));
        }
        InodeBody::Ipc { nlink, xattr } => {
            put32(out, *nlink);
            xattr.iter().for_each(|x| put32(out, *x));
        }
    }
}

fn write_dir_body(body: &InodeBody<'_>, out: &mut Vec<u8>) {
    match body {
        InodeBody::BasicDir {
            start,
            nlink,
            size,
            offset,
            parent,
        } => {
            put32(out, *start);
            put32(out, *nlink);
            put16(out, *size);
            put16(out, *offset);
            put32(out, *parent);
        }
        InodeBody::ExtDir {
            nlink,
            size,
            start,
            parent,
            offset,
            xattr,
            index,
        } => {
            put32(out, *nlink);
            put32(out, *size);
            put32(out, *start);
            put32(out, *parent);
            // The count fits: the caller checked `index.len() <= u16::MAX`.
            put16(out, index.len() as u16);
            put16(out, *offset);
            put32(out, *xattr);
            for i in index.iter() {
                put32(out, i.index);
                put32(out, i.start);
                put32(out, i.name.len() as u32 - 1);
                out.extend_from_slice(&i.name);
            }
        }
        _ => {}
    }
}

fn write_file_body(body: &InodeBody<'_>, out: &mut Vec<u8>) {
    match body {
        InodeBody::BasicFile {
            start,
            frag,
            size,
            blocks,
        } => {
            put32(out, *start);
            put_frag(out, *frag);
            put32(out, *size);
            blocks.iter().for_each(|b| put32(out, *b));
        }
        InodeBody::ExtFile {
            start,
            size,
            sparse,
            nlink,
            frag,
            xattr,
            blocks,
        } => {
            put64(out, *start);
            put64(out, *size);
            put64(out, *sparse);
            put32(out, *nlink);
            put_frag(out, *frag);
            put32(out, *xattr);
            blocks.iter().for_each(|b| put32(out, *b));
        }
        _ => {}
    }
}

/// Linux's `new_encode_dev`, which the kernel's squashfs undoes with
/// `new_decode_dev` (format.txt 5.5); `None` when major > 0xfff or minor >
/// 0xfffff do not fit the 32-bit number.
pub fn encode_dev(major: u32, minor: u32) -> Option<u32> {
    if major > 0xfff || minor > 0xf_ffff {
        return None;
    }
    Some((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

/// A directory run header (format.txt 6, `struct squashfs_dir_header`).
#[derive(Clone, Copy, Debug)]
pub struct DirHeader {
    /// Entries that follow, 1..=256 (stored minus one).
    pub count: u32,
    /// Inode-table offset of the metadata block holding those inodes.
    pub start: u32,
    /// Base inode number the entries' deltas refer to.
    pub inode_number: u32,
}

impl DirHeader {
    /// Bytes of a serialised header.
    pub const LEN: usize = 12;

    pub fn write(&self, out: &mut Vec<u8>) {
        put32(out, self.count - 1);
        put32(out, self.start);
        put32(out, self.inode_number);
    }
}

/// A directory entry (format.txt 6, `struct squashfs_dir_entry`).
#[derive(Clone, Copy, Debug)]
pub struct DirEntry<'a> {
    /// Offset of the inode in its uncompressed metadata block.
    pub offset: u16,
    /// Inode number minus the header's base.
    pub inode_delta: i16,
    /// The BASIC type of the inode, even for extended inodes.
    pub inode_type: u16,
    /// 1..=256 bytes (stored as length - 1).
    pub name: &'a [u8],
}

impl DirEntry<'_> {
    /// Bytes of the fixed part, before the name.
    pub const LEN: usize = 8;

    pub fn write(&self, out: &mut Vec<u8>) {
        put16(out, self.offset);
        out.extend_from_slice(&self.inode_delta.to_le_bytes());
        put16(out, self.inode_type);
        put16(out, self.name.len() as u16 - 1);
        out.extend_from_slice(self.name);
    }
}

/// A fragment table entry (format.txt 7, `struct squashfs_fragment_entry`).
#[derive(Clone, Copy, Debug)]
pub struct FragmentEntry {
    /// Absolute offset of the fragment block.
    pub start: u64,
    /// On-disk size, `DATA_UNCOMPRESSED` if stored raw.
    pub size: u32,
}

impl FragmentEntry {
    pub const LEN: usize = 16;

    pub fn write(&self, out: &mut Vec<u8>) {
        put64(out, self.start);
        put32(out, self.size);
        put32(out, 0); // unused
    }
}

/// Xattr name prefixes (format.txt 10); names with other prefixes cannot be
/// stored.
pub const XATTR_PREFIXES: [(&str, u16); 3] = [("user.", 0), ("trusted.", 1), ("security.", 2)];

/// One key/value pair of the xattr table, value stored inline (format.txt
/// 10, `struct squashfs_xattr_entry` + `squashfs_xattr_val`).
#[derive(Clone, Copy, Debug)]
pub struct XattrPair<'a> {
    /// Prefix id from [`XATTR_PREFIXES`].
    pub prefix: u16,
    /// The name after the prefix.
    pub name: &'a [u8],
    pub value: &'a [u8],
}

impl XattrPair<'_> {
    pub fn write(&self, out: &mut Vec<u8>) {
        put16(out, self.prefix);
        put16(out, self.name.len() as u16);
        out.extend_from_slice(self.name);
        put32(out, self.value.len() as u32);
        out.extend_from_slice(self.value);
    }
}

/// An xattr id table entry (format.txt 10, `struct squashfs_xattr_id`):
/// where one inode's set of pairs is.
#[derive(Clone, Copy, Debug)]
pub struct XattrId {
    /// Packed [`MetaRef`] into the key/value blocks.
    pub xattr: u64,
    /// Pairs in the set.
    pub count: u32,
    /// Uncompressed bytes of the set.
    pub size: u32,
}

impl XattrId {
    pub const LEN: usize = 16;

    pub fn write(&self, out: &mut Vec<u8>) {
        put64(out, self.xattr);
        put32(out, self.count);
        put32(out, self.size);
    }
}

/// The header the superblock's xattr table offset points at (format.txt 10,
/// `struct squashfs_xattr_id_table`), followed by the u64 locations of the
/// id table's metadata blocks.
#[derive(Clone, Copy, Debug)]
pub struct XattrTableHeader {
    /// Absolute offset of the first key/value metadata block.
    pub kv_start: u64,
    /// Entries in the xattr id table.
    pub ids: u32,
}

impl XattrTableHeader {
    pub fn write(&self, out: &mut Vec<u8>) {
        put64(out, self.kv_start);
        put32(out, self.ids);
        put32(out, 0); // unused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_is_96_bytes_with_magic() {
        let sb = SuperBlock {
            block_size: 131072,
            block_log: 17,
            ..SuperBlock::default()
        };
        let b = sb.to_bytes();
        assert_eq!(&b[..4], b"hsqs");
        assert_eq!(&b[12..16], &131072u32.to_le_bytes());
        assert_eq!(&b[28..32], &[4, 0, 0, 0], "version 4.0");
    }

    #[test]
    fn device_numbers_match_new_encode_dev() {
        assert_eq!(encode_dev(1, 3), Some(0x103));
        assert_eq!(encode_dev(8, 0x12345), Some(0x1230_0845));
        assert_eq!(encode_dev(0x1000, 0), None);
        assert_eq!(encode_dev(0, 0x10_0000), None);
    }

    #[test]
    fn inode_sizes_match_the_kernel_structs() {
        let h = InodeHeader {
            inode_type: 1,
            mode: 0o755,
            uid_idx: 0,
            gid_idx: 0,
            mtime: 0,
            inode_number: 1,
        };
        let mut out = Vec::new();
        let dir = InodeBody::BasicDir {
            start: 0,
            nlink: 2,
            size: 3,
            offset: 0,
            parent: 2,
        };
        write_inode(&h, &dir, &mut out);
        assert_eq!(out.len(), 32, "sizeof(struct squashfs_dir_inode)");
        out.clear();
        let file = InodeBody::ExtFile {
            start: 0,
            size: 0,
            sparse: 0,
            nlink: 1,
            frag: None,
            xattr: INVALID_INDEX,
            blocks: &[],
        };
        write_inode(&h, &file, &mut out);
        assert_eq!(out.len(), 56, "sizeof(struct squashfs_lreg_inode)");
    }
}
