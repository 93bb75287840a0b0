//! The pass-through program against the running kernel. Root only, so `#[ignore]`d in
//! plain `cargo test`: run it with `cargo test -p lb-rawbpf -- --ignored`.
//!
//! It runs in a thread with a network and a mount namespace of its own: it attaches to
//! that namespace's `lo` and mounts a bpffs nobody else sees, so the host is left as it
//! was, also when the test fails.
use std::ffi::CString;
use std::io;
use std::path::PathBuf;

use lb_rawbpf::{create_xdp_link, load_xdp_pass, load_xdp_pass_with_log, pin, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};

fn errno(result: io::Result<impl std::fmt::Debug>) -> Option<i32> {
    result.expect_err("the kernel should refuse").raw_os_error()
}

/// Runs `f` in a new thread in a network and a mount namespace of its own.
fn isolated<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare affects only this thread, which ends with `f`.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWNS) };
            assert_eq!(rc, 0, "unshare: {}", io::Error::last_os_error());
            // Keep the mounts below from propagating back into the host's namespace.
            // SAFETY: NUL-terminated strings; null source, type and data are allowed here.
            let rc = unsafe {
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                )
            };
            assert_eq!(rc, 0, "making / private: {}", io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in the namespaces")
    })
}

#[test]
#[ignore = "needs root cargo xtask test runs it"]
fn loads_attaches_and_pins_the_pass_through_program() {
    let dir = PathBuf::from(format!("/tmp/lb-rawbpf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the bpffs mount point");
    isolated(|| {
        let mut log = vec![0u8; 4096];
        load_xdp_pass_with_log("lb_rawbpf_test", &mut log).expect("loading with a log");
        let prog = load_xdp_pass("lb_rawbpf_test").expect("loading");

        // SAFETY: a NUL-terminated name.
        let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        assert_ne!(lo, 0, "lo in the new namespace");
        // lo has no native XDP; the errno comes through as it is.
        assert_eq!(errno(create_xdp_link(&prog, lo, XDP_FLAGS_DRV_MODE)), Some(libc::EOPNOTSUPP));
        let link = create_xdp_link(&prog, lo, XDP_FLAGS_SKB_MODE).expect("generic attach");
        // A link never replaces an attached program.
        assert_eq!(errno(create_xdp_link(&prog, lo, XDP_FLAGS_SKB_MODE)), Some(libc::EBUSY));
        // Closing the link detaches the program.
        drop(link);
        drop(create_xdp_link(&prog, lo, XDP_FLAGS_SKB_MODE).expect("attach after detach"));

        let fs = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: NUL-terminated strings; bpffs takes no data.
        let rc = unsafe { libc::mount(c"bpf".as_ptr(), fs.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
        assert_eq!(rc, 0, "mounting a bpffs: {}", io::Error::last_os_error());
        let path = dir.join("pass");
        pin(&prog, &path).expect("pinning");
        assert!(path.exists());
        assert_eq!(errno(pin(&prog, &path)), Some(libc::EEXIST));
        let nul = pin(&prog, "/sys/fs/bpf/a\0b").expect_err("a NUL in the path");
        assert_eq!(nul.kind(), io::ErrorKind::InvalidInput);
    });
    // The bpffs went with the thread's mount namespace; the mount point is empty.
    std::fs::remove_dir(&dir).expect("removing the mount point");
}
