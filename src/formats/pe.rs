//! PE32+ headers (a minimal reader) and unified kernel image (UKI) assembly
//! on a systemd-stub (Microsoft PE/COFF Specification rev. 11: §2 "MS-DOS
//! Stub", §3 "Overview", §3.3 "COFF File Header", §3.4 "Optional Header",
//! §4 "Section Table"; systemd's UKI specification for the section names).
//!
//! [`read_pe`] parses the DOS header, COFF header, PE32+ optional header,
//! data directories and section table, checking every offset against the
//! buffer; errors name the byte offset. It reads no section contents beyond
//! what [`PeImage::section_data`] is asked for.
//!
//! [`build_uki`] appends `.osrel`, `.cmdline`, `.uname`, `.initrd` and
//! `.linux` (in that order, as ukify does, so `.linux` is last and the
//! kernel has room above it) after the stub's last section:
//! - VirtualAddress: the end of the previous section rounded up to
//!   SectionAlignment; PointerToRawData: FileAlignment-aligned;
//!   SizeOfRawData: rounded up to FileAlignment; VirtualSize: exact length.
//! - Characteristics: `CNT_INITIALIZED_DATA | MEM_READ`, except `.linux`,
//!   which is `CNT_CODE | MEM_READ` as ukify marks it: systemd-stub 252 on
//!   x86 jumps into the kernel's EFI handover entry *inside* `.linux` (it
//!   points `code32_start` into the section), so a firmware that maps
//!   data sections non-executable must see it as code.
//! - An empty part is left out: the stub treats a zero-size section as
//!   absent (`szs[...] > 0`), so this changes nothing it does.
//! - The stub's section headers must fit between its section table and
//!   SizeOfHeaders (systemd 252's has room for 5 more: table ends at 0x2c8,
//!   SizeOfHeaders is 0x400); otherwise this is an error, headers are not
//!   moved.
//! - The stub's COFF symbol table (a deprecated debug table that the 252
//!   stub still carries after its last section) is dropped and its pointer
//!   zeroed, so section data is contiguous and Authenticode hashing (which
//!   skips anything between sections) covers every byte. Other data after
//!   the last section, or a signed stub, is refused.
//! - NumberOfSections, SizeOfImage, SizeOfCode and SizeOfInitializedData are
//!   updated; the Certificate Table stays empty (signing is a later step);
//!   CheckSum is recomputed with the §4.4 "image checksum" algorithm (ukify
//!   zeroes it; UEFI ignores it; a correct value costs nothing).
//!
//! On an x86-64 stub `.linux` must be a bzImage that systemd-stub 252 can
//! start (Documentation/arch/x86/boot.rst header: boot_flag 0xAA55, "HdrS",
//! protocol ≥ 2.11, relocatable, EFI handover 64 for ≥ 2.12) — the same
//! checks the stub makes at boot, moved to build time. The 252 stub also
//! truncates the kernel's address to 32 bits, so firmware must load the UKI
//! below 4 GiB (OVMF does).
//!
//! Non-goals: PE32 (32-bit) images, writing arbitrary PEs, relocations,
//! signing, `.splash`/`.dtb`/`.pcrsig` sections, merging the kernel's `.sbat`.

/// `e_magic` of the DOS header.
const DOS_MAGIC: &[u8; 2] = b"MZ";
/// Offset of `e_lfanew`, the file offset of the PE signature (§2).
const E_LFANEW: usize = 0x3C;
/// Bytes of the DOS header up to and including `e_lfanew`.
const DOS_HEADER_SIZE: usize = 0x40;
/// The PE signature, "PE\0\0".
const PE_SIGNATURE: &[u8; 4] = b"PE\0\0";
/// Bytes of the COFF file header (§3.3).
const COFF_HEADER_SIZE: usize = 20;
/// Optional header magic of PE32+ images.
pub const PE32_PLUS_MAGIC: u16 = 0x20B;
/// Optional header magic of PE32 images (refused).
const PE32_MAGIC: u16 = 0x10B;
/// Bytes of the PE32+ optional header before the data directories.
const OPTIONAL_FIXED_SIZE: usize = 112;
/// Bytes per data directory entry.
const DATA_DIRECTORY_SIZE: usize = 8;
/// Data directories defined by the spec (§3.4.3).
const MAX_DATA_DIRECTORIES: u32 = 16;
/// Index of the Certificate Table data directory (Authenticode signatures).
pub const DIR_CERTIFICATE_TABLE: usize = 4;
/// Bytes per section header (§4).
const SECTION_HEADER_SIZE: usize = 40;
/// The Windows loader's limit on sections (§3.3), kept as a sanity cap.
const MAX_SECTIONS: u16 = 96;
/// `Machine` of x86-64 images.
pub const MACHINE_AMD64: u16 = 0x8664;

/// Section contains executable code.
pub const IMAGE_SCN_CNT_CODE: u32 = 0x0000_0020;
/// Section contains initialized data.
pub const IMAGE_SCN_CNT_INITIALIZED_DATA: u32 = 0x0000_0040;
/// Section can be read.
pub const IMAGE_SCN_MEM_READ: u32 = 0x4000_0000;

/// Offsets of the optional header fields that UKI assembly rewrites.
mod field {
    pub const SIZE_OF_CODE: usize = 4;
    pub const SIZE_OF_INITIALIZED_DATA: usize = 8;
    pub const SIZE_OF_IMAGE: usize = 56;
    pub const SIZE_OF_HEADERS: usize = 60;
    pub const CHECKSUM: usize = 64;
    /// In the COFF header.
    pub const NUMBER_OF_SECTIONS: usize = 2;
    pub const POINTER_TO_SYMBOL_TABLE: usize = 8;
    pub const NUMBER_OF_SYMBOLS: usize = 12;
}

/// Errors from reading a PE image or assembling a UKI.
#[derive(Debug, thiserror::Error)]
pub enum PeError {
    #[error("PE image is truncated: {what} at byte {offset} needs {need} bytes, image has {len}")]
    Truncated {
        what: &'static str,
        offset: u64,
        need: u64,
        len: u64,
    },
    #[error("bad PE image at byte {offset}: {what}")]
    Malformed { offset: u64, what: String },
    #[error("UKI stub: {0}")]
    Stub(String),
    #[error("UKI .linux: {what} (kernel byte {offset})")]
    Kernel { offset: u64, what: String },
    #[error("UKI: {0}")]
    TooLarge(String),
}

/// The COFF file header (§3.3), 20 bytes after the PE signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoffHeader {
    /// `Machine` (offset 0): target CPU, e.g. [`MACHINE_AMD64`].
    pub machine: u16,
    /// `NumberOfSections` (offset 2): entries in the section table.
    pub number_of_sections: u16,
    /// `TimeDateStamp` (offset 4): seconds since 1970; 0 in systemd's stubs.
    pub time_date_stamp: u32,
    /// `PointerToSymbolTable` (offset 8): file offset of the deprecated COFF
    /// symbol table, 0 if none.
    pub pointer_to_symbol_table: u32,
    /// `NumberOfSymbols` (offset 12).
    pub number_of_symbols: u32,
    /// `SizeOfOptionalHeader` (offset 16).
    pub size_of_optional_header: u16,
    /// `Characteristics` (offset 18): image flags.
    pub characteristics: u16,
}

/// One data directory entry (§3.4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DataDirectory {
    /// RVA of the table (a file offset for the Certificate Table).
    pub virtual_address: u32,
    /// Size in bytes.
    pub size: u32,
}

/// The fields of the PE32+ optional header (§3.4) that smelt reads; offsets
/// from the start of the optional header. Version fields, stack and heap
/// sizes and LoaderFlags are not kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionalHeader {
    /// `Magic` (offset 0): [`PE32_PLUS_MAGIC`].
    pub magic: u16,
    /// `SizeOfCode` (offset 4): total raw size of code sections.
    pub size_of_code: u32,
    /// `SizeOfInitializedData` (offset 8).
    pub size_of_initialized_data: u32,
    /// `AddressOfEntryPoint` (offset 16): RVA of the entry point.
    pub address_of_entry_point: u32,
    /// `ImageBase` (offset 24): preferred load address.
    pub image_base: u64,
    /// `SectionAlignment` (offset 32): in-memory alignment of sections.
    pub section_alignment: u32,
    /// `FileAlignment` (offset 36): file alignment of raw data, 512..=64 KiB.
    pub file_alignment: u32,
    /// `SizeOfImage` (offset 56): bytes of the loaded image, a multiple of
    /// SectionAlignment.
    pub size_of_image: u32,
    /// `SizeOfHeaders` (offset 60): DOS stub + PE headers + section table,
    /// rounded up to FileAlignment.
    pub size_of_headers: u32,
    /// `CheckSum` (offset 64).
    pub checksum: u32,
    /// `Subsystem` (offset 68): 10 for an EFI application.
    pub subsystem: u16,
    /// `DllCharacteristics` (offset 70).
    pub dll_characteristics: u16,
    /// The data directories (offset 112, `NumberOfRvaAndSizes` of them).
    pub data_directories: Vec<DataDirectory>,
}

/// One section header (§4), 40 bytes. PointerToRelocations,
/// PointerToLinenumbers and their counts (zero in images) are not kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionHeader {
    /// `Name` (offset 0): 8 bytes, NUL-padded.
    pub name: [u8; 8],
    /// `VirtualSize` (offset 8): bytes in memory.
    pub virtual_size: u32,
    /// `VirtualAddress` (offset 12): RVA of the section.
    pub virtual_address: u32,
    /// `SizeOfRawData` (offset 16): bytes in the file, FileAlignment-rounded.
    pub size_of_raw_data: u32,
    /// `PointerToRawData` (offset 20): file offset of the data.
    pub pointer_to_raw_data: u32,
    /// `Characteristics` (offset 36): `IMAGE_SCN_*` flags.
    pub characteristics: u32,
}

impl SectionHeader {
    /// The name without its NUL padding.
    pub fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(8);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }

    fn encode(&self) -> [u8; SECTION_HEADER_SIZE] {
        let mut b = [0u8; SECTION_HEADER_SIZE];
        b[0..8].copy_from_slice(&self.name);
        b[8..12].copy_from_slice(&self.virtual_size.to_le_bytes());
        b[12..16].copy_from_slice(&self.virtual_address.to_le_bytes());
        b[16..20].copy_from_slice(&self.size_of_raw_data.to_le_bytes());
        b[20..24].copy_from_slice(&self.pointer_to_raw_data.to_le_bytes());
        b[36..40].copy_from_slice(&self.characteristics.to_le_bytes());
        b
    }

    fn raw_end(&self) -> u64 {
        u64::from(self.pointer_to_raw_data) + u64::from(self.size_of_raw_data)
    }

    fn virtual_end(&self) -> u64 {
        u64::from(self.virtual_address) + u64::from(self.virtual_size)
    }
}

/// The parsed headers of a PE32+ image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeImage {
    /// `e_lfanew`: file offset of the PE signature.
    pub pe_offset: u32,
    pub coff: CoffHeader,
    pub optional: OptionalHeader,
    pub sections: Vec<SectionHeader>,
}

impl PeImage {
    fn coff_offset(&self) -> usize {
        self.pe_offset as usize + PE_SIGNATURE.len()
    }

    fn optional_offset(&self) -> usize {
        self.coff_offset() + COFF_HEADER_SIZE
    }

    /// File offset of the section table.
    pub fn section_table_offset(&self) -> usize {
        self.optional_offset() + usize::from(self.coff.size_of_optional_header)
    }

    /// The first section called `name`.
    pub fn section(&self, name: &str) -> Option<&SectionHeader> {
        self.sections.iter().find(|s| s.name() == name)
    }

    /// The first `VirtualSize` bytes of section `name`'s raw data (fewer if
    /// the raw data is shorter: the loader zero-fills the rest).
    pub fn section_data<'a>(&self, image: &'a [u8], name: &str) -> Option<&'a [u8]> {
        let s = self.section(name)?;
        let len = s.virtual_size.min(s.size_of_raw_data) as usize;
        let start = s.pointer_to_raw_data as usize;
        image.get(start..start + len)
    }

    /// End of the headers and section data in the file: the largest end of
    /// a section's raw data, or SizeOfHeaders if that is larger.
    pub fn raw_end(&self) -> u64 {
        let sections = self.sections.iter().filter(|s| s.size_of_raw_data > 0);
        let end = sections.map(SectionHeader::raw_end).max().unwrap_or(0);
        end.max(u64::from(self.optional.size_of_headers))
    }
}

/// Bounds-checked little-endian reads from an image.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn slice(&self, offset: usize, len: usize, what: &'static str) -> Result<&'a [u8], PeError> {
        self.0
            .get(offset..offset.saturating_add(len))
            .ok_or(PeError::Truncated {
                what,
                offset: offset as u64,
                need: len as u64,
                len: self.0.len() as u64,
            })
    }
    fn u16(&self, offset: usize, what: &'static str) -> Result<u16, PeError> {
        let b = self.slice(offset, 2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&self, offset: usize, what: &'static str) -> Result<u32, PeError> {
        let b = self.slice(offset, 4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&self, offset: usize, what: &'static str) -> Result<u64, PeError> {
        let lo = self.u32(offset, what)?;
        let hi = self.u32(offset + 4, what)?;
        Ok(u64::from(lo) | (u64::from(hi) << 32))
    }
}

fn malformed(offset: usize, what: impl Into<String>) -> PeError {
    PeError::Malformed {
        offset: offset as u64,
        what: what.into(),
    }
}

/// Parses and checks the headers of a PE32+ image.
pub fn read_pe(bytes: &[u8]) -> Result<PeImage, PeError> {
    let b = Bytes(bytes);
    if b.slice(0, DOS_HEADER_SIZE, "DOS header")?[..2] != DOS_MAGIC[..] {
        return Err(malformed(0, "no \"MZ\" DOS signature"));
    }
    let pe_offset = b.u32(E_LFANEW, "e_lfanew")?;
    let pe = pe_offset as usize;
    if b.slice(pe, PE_SIGNATURE.len(), "PE signature")? != PE_SIGNATURE {
        return Err(malformed(
            pe,
            format!("no PE signature at e_lfanew {pe_offset:#x}"),
        ));
    }
    let coff = read_coff(&b, pe + PE_SIGNATURE.len())?;
    let opt_offset = pe + PE_SIGNATURE.len() + COFF_HEADER_SIZE;
    let optional = read_optional(&b, opt_offset, coff.size_of_optional_header)?;
    let table = opt_offset + usize::from(coff.size_of_optional_header);
    let sections = read_sections(&b, table, coff.number_of_sections)?;
    let table_end = table + SECTION_HEADER_SIZE * sections.len();
    if optional.size_of_headers as usize > bytes.len() {
        return Err(malformed(
            opt_offset + field::SIZE_OF_HEADERS,
            format!(
                "SizeOfHeaders {:#x} is past the end of the {:#x}-byte image",
                optional.size_of_headers,
                bytes.len()
            ),
        ));
    }
    if table_end as u64 > u64::from(optional.size_of_headers) {
        return Err(malformed(
            opt_offset + field::SIZE_OF_HEADERS,
            format!(
                "SizeOfHeaders {:#x} ends before the section table",
                optional.size_of_headers
            ),
        ));
    }
    Ok(PeImage {
        pe_offset,
        coff,
        optional,
        sections,
    })
}

fn read_coff(b: &Bytes<'_>, at: usize) -> Result<CoffHeader, PeError> {
    b.slice(at, COFF_HEADER_SIZE, "COFF header")?;
    let coff = CoffHeader {
        machine: b.u16(at, "Machine")?,
        number_of_sections: b.u16(at + 2, "NumberOfSections")?,
        time_date_stamp: b.u32(at + 4, "TimeDateStamp")?,
        pointer_to_symbol_table: b.u32(at + 8, "PointerToSymbolTable")?,
        number_of_symbols: b.u32(at + 12, "NumberOfSymbols")?,
        size_of_optional_header: b.u16(at + 16, "SizeOfOptionalHeader")?,
        characteristics: b.u16(at + 18, "Characteristics")?,
    };
    if coff.number_of_sections > MAX_SECTIONS {
        return Err(malformed(
            at + 2,
            format!(
                "{} sections (at most {MAX_SECTIONS})",
                coff.number_of_sections
            ),
        ));
    }
    if usize::from(coff.size_of_optional_header) < OPTIONAL_FIXED_SIZE {
        return Err(malformed(
            at + 16,
            format!(
                "SizeOfOptionalHeader {} is smaller than a PE32+ optional header",
                coff.size_of_optional_header
            ),
        ));
    }
    Ok(coff)
}

fn read_optional(b: &Bytes<'_>, at: usize, size: u16) -> Result<OptionalHeader, PeError> {
    b.slice(at, usize::from(size), "optional header")?;
    let magic = b.u16(at, "Magic")?;
    if magic == PE32_MAGIC {
        return Err(malformed(
            at,
            "PE32 image (magic 0x10b); only PE32+ (0x20b) is supported",
        ));
    }
    if magic != PE32_PLUS_MAGIC {
        return Err(malformed(
            at,
            format!("optional header magic {magic:#x} is not PE32+ (0x20b)"),
        ));
    }
    let file_alignment = b.u32(at + 36, "FileAlignment")?;
    let section_alignment = b.u32(at + 32, "SectionAlignment")?;
    if !file_alignment.is_power_of_two() || !(512..=65536).contains(&file_alignment) {
        return Err(malformed(
            at + 36,
            format!("FileAlignment {file_alignment:#x} is not a power of 2 in 512..=64K"),
        ));
    }
    if !section_alignment.is_power_of_two() || section_alignment < file_alignment {
        return Err(malformed(
            at + 32,
            format!("SectionAlignment {section_alignment:#x} is not a power of 2 ≥ FileAlignment"),
        ));
    }
    let count = b.u32(at + 108, "NumberOfRvaAndSizes")?;
    if count > MAX_DATA_DIRECTORIES
        || OPTIONAL_FIXED_SIZE + count as usize * DATA_DIRECTORY_SIZE > usize::from(size)
    {
        return Err(malformed(
            at + 108,
            format!("{count} data directories do not fit the optional header"),
        ));
    }
    let mut data_directories = Vec::new();
    for i in 0..count as usize {
        let d = at + OPTIONAL_FIXED_SIZE + i * DATA_DIRECTORY_SIZE;
        data_directories.push(DataDirectory {
            virtual_address: b.u32(d, "data directory")?,
            size: b.u32(d + 4, "data directory")?,
        });
    }
    Ok(OptionalHeader {
        magic,
        size_of_code: b.u32(at + field::SIZE_OF_CODE, "SizeOfCode")?,
        size_of_initialized_data: b.u32(
            at + field::SIZE_OF_INITIALIZED_DATA,
            "SizeOfInitializedData",
        )?,
        address_of_entry_point: b.u32(at + 16, "AddressOfEntryPoint")?,
        image_base: b.u64(at + 24, "ImageBase")?,
        section_alignment,
        file_alignment,
        size_of_image: b.u32(at + field::SIZE_OF_IMAGE, "SizeOfImage")?,
        size_of_headers: b.u32(at + field::SIZE_OF_HEADERS, "SizeOfHeaders")?,
        checksum: b.u32(at + field::CHECKSUM, "CheckSum")?,
        subsystem: b.u16(at + 68, "Subsystem")?,
        dll_characteristics: b.u16(at + 70, "DllCharacteristics")?,
        data_directories,
    })
}

fn read_sections(b: &Bytes<'_>, at: usize, count: u16) -> Result<Vec<SectionHeader>, PeError> {
    let mut out = Vec::new();
    for i in 0..usize::from(count) {
        let s = at + i * SECTION_HEADER_SIZE;
        let raw = b.slice(s, SECTION_HEADER_SIZE, "section header")?;
        let mut name = [0u8; 8];
        name.copy_from_slice(&raw[..8]);
        let h = SectionHeader {
            name,
            virtual_size: b.u32(s + 8, "VirtualSize")?,
            virtual_address: b.u32(s + 12, "VirtualAddress")?,
            size_of_raw_data: b.u32(s + 16, "SizeOfRawData")?,
            pointer_to_raw_data: b.u32(s + 20, "PointerToRawData")?,
            characteristics: b.u32(s + 36, "Characteristics")?,
        };
        if h.size_of_raw_data > 0 && h.raw_end() > b.0.len() as u64 {
            return Err(malformed(
                s + 16,
                format!(
                    "section {:?} raw data {:#x}+{:#x} runs past the end of the {:#x}-byte image",
                    h.name(),
                    h.pointer_to_raw_data,
                    h.size_of_raw_data,
                    b.0.len()
                ),
            ));
        }
        out.push(h);
    }
    Ok(out)
}

/// The parts of a unified kernel image.
#[derive(Clone, Copy, Debug)]
pub struct UkiParts<'a> {
    /// systemd-stub (`linuxx64.efi.stub`).
    pub stub: &'a [u8],
    /// os-release(5) of the OS, for `.osrel`.
    pub osrel: &'a [u8],
    /// The kernel command line, for `.cmdline`.
    pub cmdline: &'a [u8],
    /// `uname -r` of the kernel, for `.uname`.
    pub uname: Option<&'a [u8]>,
    /// The kernel (a bzImage on x86-64), for `.linux`.
    pub linux: &'a [u8],
    /// The initrd (concatenated cpio archives), for `.initrd`.
    pub initrd: &'a [u8],
}

/// Builds a UKI from `parts`; see the module doc for the layout.
pub fn build_uki(parts: &UkiParts<'_>) -> Result<Vec<u8>, PeError> {
    let pe = read_pe(parts.stub)?;
    check_stub(&pe, parts.stub)?;
    if pe.coff.machine == MACHINE_AMD64 {
        check_bzimage(parts.linux)?;
    } else if parts.linux.is_empty() {
        return Err(PeError::Kernel {
            offset: 0,
            what: "the kernel is empty".into(),
        });
    }
    let payload = [
        (".osrel", parts.osrel, DATA),
        (".cmdline", parts.cmdline, DATA),
        (".uname", parts.uname.unwrap_or_default(), DATA),
        (".initrd", parts.initrd, DATA),
        (".linux", parts.linux, CODE),
    ];
    let raw_end = pe.raw_end() as usize;
    let mut out = parts.stub[..raw_end].to_vec();
    let mut next_va = align(
        pe.sections
            .iter()
            .map(SectionHeader::virtual_end)
            .max()
            .unwrap_or(0),
        pe.optional.section_alignment,
    );
    let mut added = Vec::new();
    for (name, data, characteristics) in payload.into_iter().filter(|p| !p.1.is_empty()) {
        let h = append_section(&mut out, &pe, name, data, characteristics, next_va)?;
        next_va = align(h.virtual_end(), pe.optional.section_alignment);
        added.push(h);
    }
    let size_of_image = u32::try_from(next_va)
        .map_err(|_| PeError::TooLarge(format!("image of {next_va:#x} bytes passes 4 GiB")))?;
    write_headers(&pe, &mut out, &added, size_of_image)?;
    let checksum_at = pe.optional_offset() + field::CHECKSUM;
    let sum = pe_checksum(&out, checksum_at);
    out[checksum_at..checksum_at + 4].copy_from_slice(&sum.to_le_bytes());
    Ok(out)
}

/// Characteristics of the data sections and of `.linux` (module doc).
const DATA: u32 = IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ;
const CODE: u32 = IMAGE_SCN_CNT_CODE | IMAGE_SCN_MEM_READ;

fn align(v: u64, to: u32) -> u64 {
    v.next_multiple_of(u64::from(to))
}

/// Refuses stubs that cannot take the new sections as they are.
fn check_stub(pe: &PeImage, stub: &[u8]) -> Result<(), PeError> {
    let stub_err = |s: String| Err(PeError::Stub(s));
    let cert = pe.optional.data_directories.get(DIR_CERTIFICATE_TABLE);
    if cert.is_some_and(|d| d.size != 0 || d.virtual_address != 0) {
        return stub_err(
            "it is signed (its Certificate Table is not empty); use an unsigned stub".into(),
        );
    }
    for name in [".osrel", ".cmdline", ".uname", ".initrd", ".linux"] {
        if pe.section(name).is_some() {
            return stub_err(format!("it already has a {name} section"));
        }
    }
    let raw_end = pe.raw_end();
    let len = stub.len() as u64;
    let symbols = u64::from(pe.coff.pointer_to_symbol_table);
    if len > raw_end && symbols != raw_end {
        return stub_err(format!(
            "{} bytes after its last section at {raw_end:#x} are not its COFF symbol table",
            len - raw_end
        ));
    }
    if symbols != 0 && symbols < raw_end {
        return stub_err(format!(
            "its COFF symbol table at {symbols:#x} is inside its sections"
        ));
    }
    let table_end = pe.section_table_offset() + SECTION_HEADER_SIZE * pe.sections.len();
    let room_end = table_end + SECTION_HEADER_SIZE * 5;
    if room_end > header_limit(pe) {
        return stub_err(format!(
            "no room for 5 more section headers after its section table at {table_end:#x} \
             (headers end at {:#x})",
            header_limit(pe)
        ));
    }
    if stub[table_end..room_end].iter().any(|&b| b != 0) {
        return stub_err(format!(
            "the bytes after its section table at {table_end:#x} are in use"
        ));
    }
    Ok(())
}

/// Where the header area ends: SizeOfHeaders, or the first section's raw
/// data if that comes earlier.
fn header_limit(pe: &PeImage) -> usize {
    let first_raw = pe
        .sections
        .iter()
        .filter(|s| s.size_of_raw_data > 0)
        .map(|s| s.pointer_to_raw_data)
        .min()
        .unwrap_or(u32::MAX);
    pe.optional.size_of_headers.min(first_raw) as usize
}

/// Appends `data` as a new section at FileAlignment and returns its header.
fn append_section(
    out: &mut Vec<u8>,
    pe: &PeImage,
    name: &str,
    data: &[u8],
    characteristics: u32,
    va: u64,
) -> Result<SectionHeader, PeError> {
    let too_large = || PeError::TooLarge(format!("{name} of {} bytes passes 4 GiB", data.len()));
    let fa = pe.optional.file_alignment;
    let pointer = align(out.len() as u64, fa);
    let raw_size = align(data.len() as u64, fa);
    out.resize(pointer as usize, 0);
    out.extend_from_slice(data);
    out.resize((pointer + raw_size) as usize, 0);
    let mut n = [0u8; 8];
    n[..name.len()].copy_from_slice(name.as_bytes());
    Ok(SectionHeader {
        name: n,
        virtual_size: u32::try_from(data.len()).map_err(|_| too_large())?,
        virtual_address: u32::try_from(va).map_err(|_| too_large())?,
        size_of_raw_data: u32::try_from(raw_size).map_err(|_| too_large())?,
        pointer_to_raw_data: u32::try_from(pointer).map_err(|_| too_large())?,
        characteristics,
    })
}

/// Writes the new section headers and patches the COFF and optional header
/// fields they change (module doc).
fn write_headers(
    pe: &PeImage,
    out: &mut [u8],
    added: &[SectionHeader],
    size_of_image: u32,
) -> Result<(), PeError> {
    let mut at = pe.section_table_offset() + SECTION_HEADER_SIZE * pe.sections.len();
    for h in added {
        out[at..at + SECTION_HEADER_SIZE].copy_from_slice(&h.encode());
        at += SECTION_HEADER_SIZE;
    }
    let put16 =
        |out: &mut [u8], at: usize, v: u16| out[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |out: &mut [u8], at: usize, v: u32| out[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let coff = pe.coff_offset();
    put16(
        out,
        coff + field::NUMBER_OF_SECTIONS,
        pe.coff.number_of_sections + added.len() as u16,
    );
    put32(out, coff + field::POINTER_TO_SYMBOL_TABLE, 0);
    put32(out, coff + field::NUMBER_OF_SYMBOLS, 0);
    let opt = pe.optional_offset();
    let sum = |flag: u32, base: u32| {
        let mut raw = added.iter().filter(|h| h.characteristics & flag != 0);
        raw.try_fold(base, |acc, h| acc.checked_add(h.size_of_raw_data))
            .ok_or_else(|| PeError::TooLarge("section sizes pass 4 GiB".into()))
    };
    let code = sum(IMAGE_SCN_CNT_CODE, pe.optional.size_of_code)?;
    let data = sum(
        IMAGE_SCN_CNT_INITIALIZED_DATA,
        pe.optional.size_of_initialized_data,
    )?;
    put32(out, opt + field::SIZE_OF_CODE, code);
    put32(out, opt + field::SIZE_OF_INITIALIZED_DATA, data);
    put32(out, opt + field::SIZE_OF_IMAGE, size_of_image);
    Ok(())
}

/// Checks `.linux` the way systemd-stub 252's x86 loader does before it
/// jumps to the EFI handover entry (field offsets from boot.rst).
fn check_bzimage(k: &[u8]) -> Result<(), PeError> {
    let err = |offset: u64, what: &str| PeError::Kernel {
        offset,
        what: what.into(),
    };
    /// `sizeof(struct boot_params)`: the stub refuses anything shorter.
    const BOOT_PARAMS_SIZE: usize = 4096;
    if k.len() < BOOT_PARAMS_SIZE {
        return Err(err(
            0,
            "shorter than the 4096-byte boot_params: not a bzImage",
        ));
    }
    let le16 = |o: usize| u16::from_le_bytes([k[o], k[o + 1]]);
    if le16(0x1FE) != 0xAA55 {
        return Err(err(0x1FE, "boot_flag is not 0xAA55: not a bzImage"));
    }
    if &k[0x202..0x206] != b"HdrS" {
        return Err(err(0x202, "no \"HdrS\" setup header: not a bzImage"));
    }
    let version = le16(0x206);
    if version < 0x020B {
        return Err(err(
            0x206,
            "boot protocol older than 2.11 has no EFI handover",
        ));
    }
    if k[0x234] == 0 {
        return Err(err(0x234, "kernel is not relocatable"));
    }
    /// `xloadflags` bit 3, XLF_EFI_HANDOVER_64.
    const XLF_EFI_HANDOVER_64: u16 = 1 << 3;
    if version >= 0x020C && le16(0x236) & XLF_EFI_HANDOVER_64 == 0 {
        return Err(err(0x236, "kernel lacks the 64-bit EFI handover entry"));
    }
    Ok(())
}

/// The PE image checksum (as Windows' `CheckSumMappedFile` computes it): the
/// one's-complement-style sum of all 16-bit little-endian words with carries
/// folded, the 4-byte CheckSum field at `checksum_at` skipped, plus the file
/// length.
pub fn pe_checksum(image: &[u8], checksum_at: usize) -> u32 {
    let mut sum: u64 = 0;
    for (i, w) in image.chunks(2).enumerate() {
        if (checksum_at..checksum_at + 4).contains(&(2 * i)) {
            continue;
        }
        let word = u16::from_le_bytes([w[0], w.get(1).copied().unwrap_or(0)]);
        sum += u64::from(word);
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum = (sum & 0xFFFF) + (sum >> 16);
    (sum as u32).wrapping_add(image.len() as u32)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::*;
    use crate::digest::Digest;
    use crate::tree::testutil::run;

    const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

    fn real_stub() -> Vec<u8> {
        std::fs::read(STUB).unwrap_or_else(|e| panic!("{STUB} (package systemd-boot-efi): {e}"))
    }

    /// A synthetic PE32+ EFI application: `.text` and `.data`, 4 KiB
    /// sections, 512-byte file alignment, headers of `headers` bytes.
    fn fake_stub(headers: u32) -> Vec<u8> {
        let mut b = vec![0u8; headers as usize + 0x400];
        let put16 =
            |b: &mut [u8], at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
        let put32 =
            |b: &mut [u8], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        b[..2].copy_from_slice(b"MZ");
        put32(&mut b, E_LFANEW, 0x40);
        b[0x40..0x44].copy_from_slice(PE_SIGNATURE);
        let (coff, opt) = (0x44, 0x58);
        put16(&mut b, coff, MACHINE_AMD64);
        put16(&mut b, coff + 2, 2);
        put16(&mut b, coff + 16, 240);
        put16(&mut b, coff + 18, 0x206);
        put16(&mut b, opt, PE32_PLUS_MAGIC);
        put32(&mut b, opt + 4, 0x200);
        put32(&mut b, opt + 8, 0x200);
        put32(&mut b, opt + 16, 0x1000);
        put32(&mut b, opt + 32, 0x1000);
        put32(&mut b, opt + 36, 0x200);
        put32(&mut b, opt + 56, 0x3000);
        put32(&mut b, opt + 60, headers);
        put16(&mut b, opt + 68, 10);
        put32(&mut b, opt + 108, 16);
        let table = opt + 240;
        for (i, (name, va, chars)) in [(b".text", 0x1000, CODE), (b".data", 0x2000, DATA)]
            .into_iter()
            .enumerate()
        {
            let s = table + 40 * i;
            b[s..s + 5].copy_from_slice(name);
            put32(&mut b, s + 8, 0x10 * (i as u32 + 1));
            put32(&mut b, s + 12, va);
            put32(&mut b, s + 16, 0x200);
            put32(&mut b, s + 20, headers + 0x200 * i as u32);
            put32(&mut b, s + 36, chars);
        }
        let text = headers as usize;
        b[text..text + 4].copy_from_slice(&[0xEB, 0xFE, 0xC3, 0x90]);
        b[text + 0x200..text + 0x210].fill(0xDA);
        b
    }

    /// A buffer that passes the bzImage setup header checks.
    fn fake_bzimage(len: usize) -> Vec<u8> {
        let mut k: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        k[..2].copy_from_slice(b"MZ");
        k[0x1FE..0x200].copy_from_slice(&[0x55, 0xAA]);
        k[0x202..0x206].copy_from_slice(b"HdrS");
        k[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
        k[0x234] = 1;
        k[0x236..0x238].copy_from_slice(&0x7Fu16.to_le_bytes());
        k
    }

    fn parts<'a>(stub: &'a [u8], linux: &'a [u8], initrd: &'a [u8]) -> UkiParts<'a> {
        UkiParts {
            stub,
            osrel: b"ID=smelt\nNAME=\"smelt test\"\n",
            cmdline: b"console=ttyS0 smelt.test=1",
            uname: Some(b"6.1.0-test"),
            linux,
            initrd,
        }
    }

    #[test]
    fn reads_systemd_stub_252_headers() {
        let stub = real_stub();
        let pe = read_pe(&stub).unwrap();
        assert_eq!((pe.pe_offset, pe.coff.machine), (0x80, MACHINE_AMD64));
        assert_eq!(pe.optional.magic, PE32_PLUS_MAGIC);
        assert_eq!(pe.optional.subsystem, 10, "EFI application");
        let names: Vec<String> = pe.sections.iter().map(SectionHeader::name).collect();
        assert!(names.starts_with(&[".text".to_string()]), "{names:?}");
        assert!(names.contains(&".sdmagic".to_string()), "{names:?}");
        let magic = pe.section_data(&stub, ".sdmagic").unwrap();
        assert!(
            magic.starts_with(b"#### LoaderInfo: systemd-stub "),
            "{magic:?}"
        );
        // Our checksum agrees with the one the linker stored.
        let at = pe.optional_offset() + field::CHECKSUM;
        assert_eq!(pe_checksum(&stub, at), pe.optional.checksum);
    }

    /// (name, size, vma, file offset) per section from `objdump -h`.
    fn objdump_sections(path: &Path) -> Vec<(String, u64, u64, u64)> {
        let out = run(Command::new("objdump").arg("-h").arg(path));
        let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
        out.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 7 && f[0].parse::<u32>().is_ok())
                    .then(|| (f[1].to_string(), hex(f[2]), hex(f[3]), hex(f[5])))
            })
            .collect()
    }

    #[test]
    fn uki_layout_on_the_real_stub() {
        let (stub, linux, initrd) = (real_stub(), fake_bzimage(300_001), vec![0x30u8; 100_003]);
        let p = parts(&stub, &linux, &initrd);
        let uki = build_uki(&p).unwrap();
        assert_eq!(uki, build_uki(&p).unwrap(), "deterministic");
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("uki.efi");
        std::fs::write(&path, &uki).unwrap();
        let stub_pe = read_pe(&stub).unwrap();
        let pe = read_pe(&uki).unwrap();
        let n = stub_pe.sections.len();
        assert_eq!(pe.sections.len(), n + 5);
        let dumped = objdump_sections(&path);
        let names: Vec<&str> = dumped[n..].iter().map(|d| d.0.as_str()).collect();
        assert_eq!(names, [".osrel", ".cmdline", ".uname", ".initrd", ".linux"]);
        let sizes: Vec<u64> = dumped[n..].iter().map(|d| d.1).collect();
        assert_eq!(sizes, [p.osrel.len() as u64, 26, 10, 100_003, 300_001]);
        let (sa, fa) = (pe.optional.section_alignment, pe.optional.file_alignment);
        let mut prev_end = stub_pe
            .sections
            .iter()
            .map(SectionHeader::virtual_end)
            .max()
            .unwrap();
        for (h, d) in pe.sections[n..].iter().zip(&dumped[n..]) {
            assert_eq!(
                (
                    u64::from(h.virtual_address),
                    u64::from(h.pointer_to_raw_data)
                ),
                (d.2, d.3)
            );
            assert_eq!(u64::from(h.virtual_address), align(prev_end, sa), "{}", d.0);
            assert_eq!(h.pointer_to_raw_data % fa, 0);
            assert_eq!(
                u64::from(h.size_of_raw_data),
                align(u64::from(h.virtual_size), fa)
            );
            prev_end = h.virtual_end();
        }
        assert_eq!(pe.section_data(&uki, ".linux"), Some(&linux[..]));
        assert_eq!(pe.section_data(&uki, ".initrd"), Some(&initrd[..]));
        assert_eq!(pe.section(".linux").unwrap().characteristics, CODE);
        assert_eq!(pe.section(".osrel").unwrap().characteristics, DATA);
        assert_eq!(u64::from(pe.optional.size_of_image), align(prev_end, sa));
        assert_eq!(pe.raw_end(), uki.len() as u64, "no trailing data");
        assert_eq!(
            (pe.coff.pointer_to_symbol_table, pe.coff.number_of_symbols),
            (0, 0)
        );
        assert_eq!(
            pe_checksum(&uki, pe.optional_offset() + field::CHECKSUM),
            pe.optional.checksum
        );
        assert_eq!(
            pe.optional.size_of_headers,
            stub_pe.optional.size_of_headers
        );
        // The stub's own bytes are kept: DOS stub and PE signature, and all
        // section data.
        let coff = stub_pe.coff_offset();
        assert_eq!(uki[..coff], stub[..coff]);
        let (first, end) = (
            stub_pe.sections[0].pointer_to_raw_data as usize,
            stub_pe.raw_end() as usize,
        );
        assert_eq!(uki[first..end], stub[first..end]);
        let list = Command::new("sbverify")
            .arg("--list")
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&list.stdout) + String::from_utf8_lossy(&list.stderr);
        assert!(text.contains("No signature table present"), "{text}");
        assert!(!text.contains("gaps between"), "{text}");
    }

    #[test]
    fn sbsign_signature_verifies() {
        let (stub, linux, initrd) = (real_stub(), fake_bzimage(200_000), vec![1u8; 5000]);
        let uki = build_uki(&parts(&stub, &linux, &initrd)).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let file = |n: &str| tmp.path().join(n);
        std::fs::write(file("uki.efi"), &uki).unwrap();
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=smelt test key/", "-keyout"])
            .arg(file("db.key"))
            .arg("-out")
            .arg(file("db.crt")));
        run(Command::new("sbsign")
            .arg("--key")
            .arg(file("db.key"))
            .arg("--cert")
            .arg(file("db.crt"))
            .arg("--output")
            .arg(file("signed.efi"))
            .arg(file("uki.efi")));
        let ok = run(Command::new("sbverify")
            .arg("--cert")
            .arg(file("db.crt"))
            .arg(file("signed.efi")));
        assert!(ok.contains("Signature verification OK"), "{ok}");
        let signed = std::fs::read(file("signed.efi")).unwrap();
        let pe = read_pe(&signed).unwrap();
        assert_ne!(pe.optional.data_directories[DIR_CERTIFICATE_TABLE].size, 0);
        let err = build_uki(&parts(&signed, &linux, &initrd)).unwrap_err();
        assert!(err.to_string().contains("it is signed"), "{err}");
    }

    #[test]
    fn golden_uki_from_a_synthetic_stub() {
        let (stub, linux) = (fake_stub(0x400), fake_bzimage(5000));
        let uki = build_uki(&parts(&stub, &linux, b"initrd")).unwrap();
        let pe = read_pe(&uki).unwrap();
        let vas: Vec<u32> = pe.sections.iter().map(|s| s.virtual_address).collect();
        assert_eq!(
            vas,
            [0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000, 0x7000]
        );
        let ptrs: Vec<u32> = pe.sections.iter().map(|s| s.pointer_to_raw_data).collect();
        assert_eq!(ptrs, [0x400, 0x600, 0x800, 0xA00, 0xC00, 0xE00, 0x1000]);
        assert_eq!(pe.optional.size_of_image, 0x9000);
        assert_eq!(pe.optional.size_of_code, 0x200 + 0x1400);
        assert_eq!(pe.optional.size_of_initialized_data, 0x200 + 4 * 0x200);
        assert_eq!(uki.len(), 0x1000 + 0x1400);
        // Empty parts are left out.
        let mut p = parts(&stub, &linux, b"");
        p.uname = None;
        p.cmdline = b"";
        let names: Vec<String> = read_pe(&build_uki(&p).unwrap())
            .unwrap()
            .sections
            .iter()
            .map(SectionHeader::name)
            .collect();
        assert_eq!(names, [".text", ".data", ".osrel", ".linux"]);
        assert_eq!(
            Digest::of(&uki).to_string(),
            "sha256:1cc6d87e3bedb86b15cc3dd2d915f19168adb67a63a59bf889b383208af553c2"
        );
    }

    fn err_of(bytes: &[u8]) -> String {
        read_pe(bytes).unwrap_err().to_string()
    }

    #[test]
    fn malformed_images_name_the_offset() {
        let stub = fake_stub(0x400);
        assert!(err_of(&stub[..10]).contains("DOS header at byte 0 needs 64 bytes, image has 10"));
        let mut b = stub.clone();
        b[0] = b'Z';
        assert_eq!(
            err_of(&b),
            "bad PE image at byte 0: no \"MZ\" DOS signature"
        );
        let mut b = stub.clone();
        b[0x42] = b'X';
        assert!(
            err_of(&b).starts_with("bad PE image at byte 64: no PE signature"),
            "{}",
            err_of(&b)
        );
        let mut b = stub.clone();
        b[E_LFANEW..E_LFANEW + 4].copy_from_slice(&0x10_0000u32.to_le_bytes());
        assert!(
            err_of(&b).contains("PE signature at byte 1048576"),
            "{}",
            err_of(&b)
        );
        assert!(
            err_of(&stub[..0x50]).contains("COFF header at byte 68 needs 20"),
            "{}",
            err_of(&stub[..0x50])
        );
        assert!(err_of(&stub[..0x100]).contains("optional header at byte 88 needs 240"));
        let table_cut = &stub[..0x148 + 20];
        assert!(
            err_of(table_cut).contains("section header at byte 328 needs 40"),
            "{}",
            err_of(table_cut)
        );
        let raw_cut = &stub[..0x700];
        assert!(
            err_of(raw_cut).starts_with("bad PE image at byte 384: section \".data\" raw data"),
            "{}",
            err_of(raw_cut)
        );
        let mut b = stub.clone();
        b[0x58..0x5A].copy_from_slice(&PE32_MAGIC.to_le_bytes());
        assert_eq!(
            err_of(&b),
            "bad PE image at byte 88: PE32 image (magic 0x10b); only PE32+ (0x20b) is supported"
        );
        let mut b = stub.clone();
        b[0x58 + 36] = 0x10; // FileAlignment 0x210
        assert!(
            err_of(&b).starts_with("bad PE image at byte 124: FileAlignment"),
            "{}",
            err_of(&b)
        );
        let mut b = stub.clone();
        b[0x58 + 108] = 17;
        assert!(
            err_of(&b).starts_with("bad PE image at byte 196: 17 data directories"),
            "{}",
            err_of(&b)
        );
        let mut b = stub;
        b[0x46] = 200; // NumberOfSections
        assert!(
            err_of(&b).starts_with("bad PE image at byte 70: 200 sections"),
            "{}",
            err_of(&b)
        );
    }

    #[test]
    fn no_panic_on_truncated_or_flipped_stubs() {
        let stub = fake_stub(0x400);
        let linux = fake_bzimage(5000);
        for len in 0..stub.len() {
            let _ = read_pe(&stub[..len]);
            let _ = build_uki(&parts(&stub[..len], &linux, b"i"));
        }
        for at in 0..0x200 {
            for bit in [0x01, 0x80] {
                let mut b = stub.clone();
                b[at] ^= bit;
                let _ = read_pe(&b);
                let _ = build_uki(&parts(&b, &linux, b"i"));
            }
        }
    }

    #[test]
    fn unusable_stubs_and_kernels_are_refused() {
        let linux = fake_bzimage(5000);
        let build = |stub: &[u8], linux: &[u8]| {
            build_uki(&parts(stub, linux, b"i"))
                .unwrap_err()
                .to_string()
        };
        let err = build(&fake_stub(0x200), &linux);
        assert!(
            err.contains("no room for 5 more section headers after its section table at 0x198"),
            "{err}"
        );
        let mut junk = fake_stub(0x400);
        junk.extend_from_slice(b"overlay");
        assert!(build(&junk, &linux).contains("7 bytes after its last section at 0x800"));
        let uki = build_uki(&parts(&fake_stub(0x400), &linux, b"i")).unwrap();
        assert!(build(&uki, &linux).contains("already has a .osrel section"));
        let mut k = linux.clone();
        k[0x202] = b'X';
        assert_eq!(
            build(&fake_stub(0x400), &k),
            "UKI .linux: no \"HdrS\" setup header: not a bzImage (kernel byte 514)"
        );
        let mut k = linux.clone();
        k[0x234] = 0;
        assert!(build(&fake_stub(0x400), &k).contains("not relocatable (kernel byte 564)"));
        let mut k = linux.clone();
        k[0x236] = 0;
        assert!(build(&fake_stub(0x400), &k).contains("EFI handover entry (kernel byte 566)"));
        assert!(build(&fake_stub(0x400), &linux[..4000]).contains("shorter than the 4096-byte"));
    }

    /// A kernel to boot: `$SMELT_TEST_KERNEL`, else the newest
    /// `/boot/vmlinuz-*`, else the linux-image deb that `make image` caches
    /// (`${RECIPE_CACHE:-$TMPDIR/smelt-recipes}`), unpacked into `tmp`.
    /// Panics, never skips, when there is none.
    fn test_kernel(tmp: &Path) -> PathBuf {
        if let Some(k) = std::env::var_os("SMELT_TEST_KERNEL") {
            return PathBuf::from(k);
        }
        let newest = |dir: &Path, prefix: &str| {
            let entries = std::fs::read_dir(dir).ok()?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
                })
                .collect();
            found.sort();
            found.pop()
        };
        if let Some(k) = newest(Path::new("/boot"), "vmlinuz-") {
            return k;
        }
        let cache = std::env::var_os("RECIPE_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("smelt-recipes"));
        let deb = newest(&cache, "linux-image-").unwrap_or_else(|| {
            panic!(
                "no kernel: set SMELT_TEST_KERNEL, install linux-image-cloud-amd64, \
                 or run `make image` (it caches the kernel deb in {})",
                cache.display()
            )
        });
        let root = tmp.join("kernel-deb");
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
        newest(&root.join("boot"), "vmlinuz-").expect("the deb has /boot/vmlinuz-*")
    }

    /// A newc initrd whose /init (run by busybox-static's sh) prints a
    /// marker and powers off.
    fn test_initrd() -> Vec<u8> {
        use crate::tree::testutil::{bytes, meta};
        use crate::tree::{FsTree, LeafKind, Node};
        let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
        let mut t = FsTree::new();
        let script = b"#!/bin/busybox sh\necho SMELT_UKI_INIT_OK\n/bin/busybox poweroff -f\n";
        let nodes = [
            ("init", Node::file(meta(0o755, 0), bytes(script))),
            ("bin/busybox", Node::file(meta(0o755, 0), bytes(&busybox))),
            (
                "dev/console",
                Node::leaf(meta(0o600, 0), LeafKind::CharDev { major: 5, minor: 1 }),
            ),
        ];
        for (path, node) in nodes {
            t.insert(Path::new(path), node).unwrap();
        }
        let mut out = Vec::new();
        crate::formats::cpio::write_newc(&t, &mut out, &Default::default()).unwrap();
        out
    }

    /// Boots `esp`/EFI/BOOT/BOOTX64.EFI under OVMF with QEMU TCG until the
    /// console shows `until` or QEMU exits or `timeout` passes; returns the
    /// console and whether QEMU exited by itself.
    fn boot_ovmf(
        esp: &Path,
        vars: &Path,
        until: &str,
        timeout: std::time::Duration,
    ) -> (String, bool) {
        use std::io::Read as _;
        use std::sync::{Arc, Mutex};
        let pflash = |unit: u8, file: &Path, ro: bool| {
            let ro = if ro { ",readonly=on" } else { "" };
            format!(
                "if=pflash,format=raw,unit={unit}{ro},file={}",
                file.display()
            )
        };
        let mut child = Command::new("qemu-system-x86_64")
            .args([
                "-machine", "q35", "-accel", "tcg", "-m", "1024", "-smp", "1",
            ])
            .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
            .args(["-no-reboot", "-nic", "none"])
            .args([
                "-drive",
                &pflash(0, Path::new("/usr/share/OVMF/OVMF_CODE.fd"), true),
            ])
            .args(["-drive", &pflash(1, vars, false)])
            .args([
                "-drive",
                &format!("file=fat:rw:{},format=raw,media=disk", esp.display()),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("qemu-system-x86_64 (package qemu-system-x86)");
        let console = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = Arc::clone(&console);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let start = std::time::Instant::now();
        let exited = loop {
            if child.try_wait().unwrap().is_some() {
                break true;
            }
            let seen = String::from_utf8_lossy(&console.lock().unwrap()).contains(until);
            if seen || start.elapsed() > timeout {
                child.kill().unwrap();
                child.wait().unwrap();
                break false;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        reader.join().unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let text = String::from_utf8_lossy(&console.lock().unwrap()).into_owned();
        (format!("{text}\n--- qemu stderr ---\n{err}"), exited)
    }

    /// Boot proof (about 15 s under TCG here; QEMU is killed after 90 s):
    /// the UKI built from systemd-stub 252, a Debian kernel and a busybox
    /// initrd boots under OVMF from a QEMU vvfat ESP; the kernel's console
    /// shows it got `.cmdline` and ran `/init` from `.initrd`, which powers
    /// off. `SMELT_SHOW_CONSOLE=1` prints the console.
    #[test]
    fn uki_boots_under_ovmf() {
        let tmp = tempfile::tempdir().unwrap();
        let kernel = std::fs::read(test_kernel(tmp.path())).unwrap();
        let (stub, initrd) = (real_stub(), test_initrd());
        let marker = "smelt.uki_cmdline_marker=7f3a9c";
        let cmdline = format!("console=ttyS0 panic=-1 {marker}");
        let uki = build_uki(&UkiParts {
            stub: &stub,
            osrel: b"ID=smelt\nNAME=smelt\n",
            cmdline: cmdline.as_bytes(),
            uname: None,
            linux: &kernel,
            initrd: &initrd,
        })
        .unwrap();
        let esp = tmp.path().join("esp");
        std::fs::create_dir_all(esp.join("EFI/BOOT")).unwrap();
        std::fs::write(esp.join("EFI/BOOT/BOOTX64.EFI"), &uki).unwrap();
        let vars = tmp.path().join("OVMF_VARS.fd");
        std::fs::copy("/usr/share/OVMF/OVMF_VARS.fd", &vars).unwrap();
        let start = std::time::Instant::now();
        let (console, exited) = boot_ovmf(
            &esp,
            &vars,
            "reboot: Power down",
            std::time::Duration::from_secs(90),
        );
        eprintln!("UKI boot took {:?}", start.elapsed());
        if std::env::var_os("SMELT_SHOW_CONSOLE").is_some() {
            eprintln!("{console}");
        }
        assert!(
            console.contains("Linux version "),
            "kernel never printed:\n{console}"
        );
        let cmd = console.lines().find(|l| l.contains("Command line:"));
        assert!(
            cmd.is_some_and(|l| l.contains(marker)),
            "{cmd:?}\n{console}"
        );
        assert!(
            console.contains("SMELT_UKI_INIT_OK"),
            "/init from .initrd did not run:\n{console}"
        );
        assert!(
            exited || console.contains("reboot: Power down"),
            "{console}"
        );
    }
}
