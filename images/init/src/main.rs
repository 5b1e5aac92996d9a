//! `/init` and `/sbin/init`: see the library for what it does.

fn main() {
    if std::process::id() != 1 {
        eprintln!("smelt init: must run as PID 1 (it mounts, switches root and reboots)");
        std::process::exit(1);
    }
    smelt_init::install_panic_hook();
    let sys = smelt_init::sys::RealSys::new();
    let msg = smelt_init::run(&sys);
    eprintln!("smelt init: fatal: {msg}");
    smelt_init::sys::halt_forever();
}
