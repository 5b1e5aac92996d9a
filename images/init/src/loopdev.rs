//! A read-only loop device over a file: how stage 1 turns the squashfs
//! file on an ISO into a block device squashfs can mount.
//!
//! `LOOP_CTL_GET_FREE` on `/dev/loop-control` names a free device, then
//! `LOOP_CONFIGURE` (Linux 5.8+) attaches the file in one call; kernels
//! without it (ENOTTY/EINVAL) get `LOOP_SET_FD` + `LOOP_SET_STATUS64`, as
//! util-linux's losetup does. A device taken between the two calls (EBUSY)
//! means asking for another, a few times. No autoclear: the device must
//! outlive every fd stage 1 holds, since it is mounted only afterwards.
//! Non-goals: offsets, size limits, direct I/O, detaching.

use std::io;

use crate::sys::Sys;

pub const LOOP_CONTROL: &str = "/dev/loop-control";
/// Block major of loop devices (Documentation/admin-guide/devices.txt).
pub const LOOP_MAJOR: u32 = 7;
/// Tries when a free device is taken before it is configured.
const TRIES: usize = 4;

fn ctx(what: String, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Attach `backing` read-only to a free loop device; returns `/dev/loopN`.
pub fn attach_ro(sys: &dyn Sys, backing: &str) -> io::Result<String> {
    if !sys.exists(LOOP_CONTROL) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{LOOP_CONTROL} is missing (loop driver not loaded?)"),
        ));
    }
    let mut last = None;
    for _ in 0..TRIES {
        let n = sys
            .loop_get_free()
            .map_err(|e| ctx(format!("{LOOP_CONTROL}: LOOP_CTL_GET_FREE"), e))?;
        let dev = format!("/dev/loop{n}");
        if !sys.exists(&dev) {
            sys.mknod_block(&dev, LOOP_MAJOR, n)
                .map_err(|e| ctx(format!("creating {dev}"), e))?;
        }
        let r = match sys.loop_configure(&dev, backing) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL)) => {
                sys.loop_set_fd(&dev, backing)
            }
            r => r,
        };
        match r {
            Ok(()) => return Ok(dev),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = Some(e),
            Err(e) => return Err(ctx(format!("attaching {backing} to {dev}"), e)),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EBUSY));
    Err(ctx(
        format!("attaching {backing}: every free loop device was taken"),
        e,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeSys;

    const ISO_FILE: &str = "/.smelt/media/smelt/root.squashfs";

    #[test]
    fn configure_in_one_call_and_create_the_node() {
        let sys = FakeSys::new().file(LOOP_CONTROL, "").file(ISO_FILE, "sq");
        sys.free_loops.borrow_mut().push_back(3);
        assert_eq!(attach_ro(&sys, ISO_FILE).unwrap(), "/dev/loop3");
        assert_eq!(
            sys.calls(),
            [
                "loop_get_free".to_string(),
                "mknod /dev/loop3 b 7:3".to_string(),
                format!("loop_configure /dev/loop3 {ISO_FILE}"),
            ]
        );
        // The fake loop device reads as its backing file.
        assert_eq!(sys.read_file("/dev/loop3").unwrap(), b"sq");
    }

    #[test]
    fn old_kernels_fall_back_and_busy_devices_are_skipped() {
        let mut sys = FakeSys::new()
            .file(LOOP_CONTROL, "")
            .file("/dev/loop0", "")
            .file("/dev/loop1", "")
            .file(ISO_FILE, "sq");
        sys.loop_errors = [("/dev/loop0".to_string(), libc::EBUSY)].into();
        sys.no_loop_configure = true;
        sys.free_loops.borrow_mut().extend([0, 1]);
        assert_eq!(attach_ro(&sys, ISO_FILE).unwrap(), "/dev/loop1");
        assert_eq!(
            sys.calls(),
            [
                "loop_get_free".to_string(),
                format!("loop_configure /dev/loop0 {ISO_FILE}"),
                format!("loop_set_fd /dev/loop0 {ISO_FILE}"),
                "loop_get_free".to_string(),
                format!("loop_configure /dev/loop1 {ISO_FILE}"),
                format!("loop_set_fd /dev/loop1 {ISO_FILE}"),
            ]
        );
    }

    #[test]
    fn missing_driver_and_bad_backing_are_explained() {
        let sys = FakeSys::new();
        let e = attach_ro(&sys, ISO_FILE).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/loop-control is missing (loop driver not loaded?)"
        );
        let sys = FakeSys::new().file(LOOP_CONTROL, "").file("/dev/loop0", "");
        sys.free_loops.borrow_mut().push_back(0);
        let e = attach_ro(&sys, "/nope").unwrap_err();
        assert!(
            e.to_string().starts_with("attaching /nope to /dev/loop0: "),
            "{e}"
        );
    }
}
