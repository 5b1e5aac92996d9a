//! The ACPI power button: a KEY_POWER press on any `/dev/input/event*`
//! device means "power off", as acpid/systemd-logind treat it.
//!
//! The kernel's ACPI `button` driver reports the button as an input device
//! (`LNXPWRBN`, loaded by modalias), and `evdev` must be loaded for the
//! `event*` nodes to exist (`modules::DEFAULT_MODULES` loads it). The
//! watcher (one thread per device, see `RealSys::watch_power_button`) turns
//! a press into SIGPWR to PID 1, so shutdown takes the same path as
//! busybox's `poweroff`. Non-goals: sleep/suspend keys, the lid switch.

use std::io::{self, Read};

/// `struct input_event` on 64-bit Linux: `timeval` (16 bytes), `__u16
/// type`, `__u16 code`, `__s32 value` (include/uapi/linux/input.h).
pub const EVENT_SIZE: usize = 24;
/// include/uapi/linux/input-event-codes.h
pub const EV_KEY: u16 = 0x01;
pub const KEY_POWER: u16 = 116;

/// Whether one raw event is a KEY_POWER press (value 1; 0 is release,
/// 2 autorepeat).
pub fn is_power_press(ev: &[u8; EVENT_SIZE]) -> bool {
    let ty = u16::from_ne_bytes([ev[16], ev[17]]);
    let code = u16::from_ne_bytes([ev[18], ev[19]]);
    let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
    ty == EV_KEY && code == KEY_POWER && value == 1
}

/// Read events until EOF or error, calling `on_press` for each press.
pub fn watch(mut dev: impl Read, mut on_press: impl FnMut()) -> io::Result<()> {
    let mut ev = [0u8; EVENT_SIZE];
    loop {
        match dev.read_exact(&mut ev) {
            Ok(()) => {
                if is_power_press(&ev) {
                    on_press();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ty: u16, code: u16, value: i32) -> Vec<u8> {
        let mut v = vec![0u8; 16];
        v.extend(ty.to_ne_bytes());
        v.extend(code.to_ne_bytes());
        v.extend(value.to_ne_bytes());
        v
    }

    #[test]
    fn only_power_presses_count() {
        let mut stream = Vec::new();
        stream.extend(ev(EV_KEY, KEY_POWER, 1)); // press
        stream.extend(ev(0, 0, 0)); // EV_SYN
        stream.extend(ev(EV_KEY, KEY_POWER, 0)); // release
        stream.extend(ev(EV_KEY, 30, 1)); // KEY_A
        stream.extend(ev(0x02, KEY_POWER, 1)); // EV_REL, same code
        stream.extend(ev(EV_KEY, KEY_POWER, 1));
        let mut presses = 0;
        watch(stream.as_slice(), || presses += 1).unwrap();
        assert_eq!(presses, 2);
    }
}
