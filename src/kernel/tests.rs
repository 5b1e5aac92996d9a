use super::*;

/// A `.config` with every option of every fragment built in, with the
/// given lines appended (later lines win).
fn full_config(extra: &str) -> KernelConfig {
    let mut text = String::from("# Linux/x86 6.1.99 Kernel Configuration\n");
    for f in Feature::ALL {
        for r in f.requirements() {
            text.push_str(&format!("{}=y\n", r.option));
        }
    }
    text.push_str(extra);
    KernelConfig::parse(&text, "full").unwrap()
}

fn target(outputs: &[Format]) -> Target {
    Target {
        outputs: outputs.to_vec(),
        initrd: Compression::Gzip,
        root: RootCompression::Zstd,
    }
}

#[test]
fn every_embedded_fragment_parses_and_has_options() {
    for (i, f) in Feature::ALL.iter().enumerate() {
        assert_eq!(*f as usize, i, "Feature::ALL is in declaration order");
        let file = format!("kernel-configs/{}.cfg", f.name());
        let parsed = parse_fragment(f.fragment(), &file).unwrap();
        assert!(!parsed.is_empty(), "{file} lists no options");
        assert_eq!(f.requirements(), &parsed[..]);
    }
}

#[test]
fn every_fragment_file_is_embedded() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernel-configs");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".cfg").map(String::from))
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = Feature::ALL.iter().map(|f| f.name().to_string()).collect();
    embedded.sort();
    assert_eq!(on_disk, embedded);
}

#[test]
fn outputs_map_to_features() {
    use Feature::*;
    let f = |o: &[Format]| target(o).features();
    assert_eq!(f(&[Format::KernelInitrd]), [Base, InitrdGzip]);
    assert_eq!(f(&[Format::Tar]), []);
    assert_eq!(
        f(&[Format::KernelSquashfs]),
        [Base, InitrdGzip, Squashfs, SquashfsZstd]
    );
    assert_eq!(
        f(&[Format::Uki]),
        [Base, InitrdGzip, Squashfs, SquashfsZstd, Uefi]
    );
    assert_eq!(
        f(&[Format::Iso]),
        [Base, InitrdGzip, Squashfs, SquashfsZstd, Iso, Uefi]
    );
    assert_eq!(
        f(&[Format::Qcow2, Format::Raw]),
        [Base, InitrdGzip, Squashfs, SquashfsZstd, Raw, Uefi]
    );
    let t = Target {
        outputs: vec![Format::KernelInitrd, Format::Iso],
        initrd: Compression::Zstd,
        root: RootCompression::Xz,
    };
    assert_eq!(
        t.features(),
        [
            Base, InitrdGzip, InitrdZstd, Squashfs, SquashfsXz, Iso, Uefi
        ]
    );
    let t = Target {
        outputs: vec![Format::KernelInitrd, Format::Raw],
        initrd: Compression::None,
        root: RootCompression::Gzip,
    };
    assert_eq!(
        t.features(),
        [Base, InitrdGzip, Squashfs, SquashfsGzip, Raw, Uefi]
    );
}

#[test]
fn compressions_parse_by_their_spec_names() {
    assert_eq!(parse_root_compression("xz").unwrap(), RootCompression::Xz);
    assert_eq!(parse_initrd_compression("none").unwrap(), Compression::None);
    let e = parse_root_compression("lz4").unwrap_err().to_string();
    assert!(
        e.starts_with("root compression \"lz4\": unknown variant"),
        "{e}"
    );
}

#[test]
fn a_full_config_misses_nothing() {
    let all: Vec<Feature> = Feature::ALL.to_vec();
    assert_eq!(check(&full_config(""), &all), []);
}

#[test]
fn an_unset_option_is_missing_with_its_reason() {
    let c = full_config("# CONFIG_USB_STORAGE is not set\n");
    let m = check(&c, &target(&[Format::Iso]).features());
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].option, "CONFIG_USB_STORAGE");
    assert_eq!(m[0].needed, Need::BuiltInOrModule);
    assert_eq!(m[0].has, Has::NotSet);
    assert_eq!(m[0].feature, Feature::Iso);
    assert_eq!(
        m[0].to_string(),
        "MISSING CONFIG_USB_STORAGE (needed =y or =m for iso: USB sticks: the USB mass storage driver), kernel has: not set"
    );
    // Not needed for kernel+initrd.
    assert_eq!(check(&c, &target(&[Format::KernelInitrd]).features()), []);
}

#[test]
fn a_module_where_built_in_is_needed_is_missing() {
    let c = full_config("CONFIG_UNIX=m\nCONFIG_INPUT_EVDEV=m\n");
    let m = check(&c, &[Feature::Base]);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].option, "CONFIG_UNIX");
    assert_eq!(m[0].has, Has::Module);
    assert_eq!(
        m[0].to_string(),
        "MISSING CONFIG_UNIX (needed =y for base: runc talks to its init process over AF_UNIX sockets), kernel has: module"
    );
}

#[test]
fn an_option_absent_from_the_config_is_not_set_and_odd_values_are_shown() {
    let c = KernelConfig::parse("CONFIG_EFI=\"y\"\n", "c").unwrap();
    let m = check(&c, &[Feature::Uefi]);
    let got: Vec<String> = m
        .iter()
        .map(|m| format!("{} {}", m.option, m.has))
        .collect();
    assert_eq!(got, ["CONFIG_EFI =\"y\"", "CONFIG_EFI_STUB not set"]);
}

#[test]
fn an_option_two_features_need_is_reported_once() {
    let c = full_config("# CONFIG_BLK_DEV_SD is not set\n");
    let m = check(&c, &[Feature::Iso, Feature::Raw]);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].feature, Feature::Iso);
    // And counted once.
    let both = option_count(&[Feature::Iso, Feature::Raw]);
    assert!(both < option_count(&[Feature::Iso]) + option_count(&[Feature::Raw]));
}

fn source(text: &str) -> KernelSource {
    KernelSource {
        text: text.to_string(),
        origin: "img:/kernel.config".to_string(),
        release: Some("6.1.0-57-amd64".to_string()),
    }
}

fn full_text(extra: &str) -> String {
    let mut text = String::new();
    for f in Feature::ALL {
        for r in f.requirements() {
            text.push_str(&format!("{}=m\n", r.option));
        }
    }
    for f in Feature::ALL {
        for r in f.requirements().iter().filter(|r| r.need == Need::BuiltIn) {
            text.push_str(&format!("{}=y\n", r.option));
        }
    }
    text + extra
}

#[test]
fn reports_summarise_per_output() {
    let t = target(&[Format::Iso, Format::Raw]);
    let r = Report::new(&source(&full_text("")), &t).unwrap();
    assert_eq!(
        r.lines(),
        [format!(
            "kernel 6.1.0-57-amd64: all {} options for iso, raw present",
            r.checked
        )]
    );
    let r = Report::new(&source(&full_text("# CONFIG_ISO9660_FS is not set\n")), &t).unwrap();
    assert_eq!(
        r.summary(),
        "kernel 6.1.0-57-amd64: 1 option missing for iso, raw"
    );
    let text = full_text("# CONFIG_ISO9660_FS is not set\nCONFIG_EFI_PARTITION=m\n");
    let r = Report::new(&source(&text), &t).unwrap();
    assert_eq!(r.lines().len(), 3);
    assert_eq!(
        r.summary(),
        "kernel 6.1.0-57-amd64: 2 options missing for iso, raw"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["missing"][1]["option"], "CONFIG_EFI_PARTITION");
    assert_eq!(json["missing"][1]["needed"], "y");
    assert_eq!(json["missing"][1]["has"], "module");
    assert_eq!(json["missing"][1]["feature"], "raw");
    assert_eq!(json["outputs"], serde_json::json!(["iso", "raw"]));
}

#[test]
fn build_warnings() {
    let (gz, zstd) = (Compression::Gzip, RootCompression::Zstd);
    let ok = source(&full_text(""));
    assert_eq!(
        warn_for_build(Some(&ok), &[Format::Iso], gz, zstd),
        [] as [String; 0]
    );
    // A tar needs nothing, so a missing config is no news.
    assert_eq!(
        warn_for_build(None, &[Format::Tar], gz, zstd),
        [] as [String; 0]
    );
    let w = warn_for_build(None, &[Format::Iso, Format::Uki], gz, zstd);
    assert_eq!(w.len(), 1);
    assert!(
        w[0].starts_with("the kernel image carries no kernel config (looked for /kernel.config"),
        "{w:?}"
    );
    assert!(
        w[0].ends_with("its options for uki, iso were not checked"),
        "{w:?}"
    );
    let bad = source("CONFIG_A=y\ngarbage\n");
    assert_eq!(
        warn_for_build(Some(&bad), &[Format::KernelInitrd], gz, zstd),
        [
            "kernel config img:/kernel.config:2: expected CONFIG_NAME=VALUE or a # comment, found \"garbage\": its options for kernel+initrd were not checked"
        ]
    );
    let lacking = source(&full_text("# CONFIG_SQUASHFS_ZSTD is not set\n"));
    let w = warn_for_build(Some(&lacking), &[Format::KernelSquashfs], gz, zstd);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].starts_with("MISSING CONFIG_SQUASHFS_ZSTD (needed =y for squashfs-zstd: "));
    assert_eq!(
        w[1],
        "kernel 6.1.0-57-amd64: 1 option missing for kernel+squashfs"
    );
    // The same kernel is fine for an xz root.
    let w = warn_for_build(
        Some(&lacking),
        &[Format::KernelSquashfs],
        gz,
        RootCompression::Xz,
    );
    assert_eq!(w, [] as [String; 0]);
}
