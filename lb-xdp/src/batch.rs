//! `BPF_MAP_UPDATE_BATCH` and `BPF_MAP_LOOKUP_BATCH` for the big arrays: one syscall
//! writes (or reads back) a whole table instead of one per slot. A first write of 64
//! services' rings is 4 million slots; at one syscall each that took close to two seconds,
//! in one batch per table it is a small fraction of that. Reading every service and
//! backend slot's meta (1 024 + 16 384 slots, for each listing, scrape and status poll) is
//! two batches instead of 17 408 lookups. aya 0.14 has no batch API, hence the raw syscall.
//! Kernels without batch support for the map (before 5.6) fall back to one call per slot.
use std::io;
use std::os::fd::{AsFd, AsRawFd};

use aya::maps::{Array, IterableMap, MapData};
use aya::Pod;

/// `enum bpf_cmd`
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
/// Entries per syscall: one Maglev table at most, and a bounded time in the kernel.
const CHUNK: usize = 65_537;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Write `values[i]` at index `keys[i]`, in as few syscalls as the kernel allows.
pub fn update(map: &mut Array<MapData, u32>, keys: &[u32], values: &[u32]) -> io::Result<()> {
    debug_assert_eq!(keys.len(), values.len());
    let fd = map.map().fd().as_fd().as_raw_fd();
    let mut done = 0;
    while done < keys.len() {
        let n = (keys.len() - done).min(CHUNK);
        match update_batch(fd, &keys[done..done + n], &values[done..done + n]) {
            Ok(()) => done += n,
            // No batch support for this map here: one update per entry.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOTSUP) | Some(524)) => {
                for (k, v) in keys[done..].iter().zip(&values[done..]) {
                    map.set(*k, *v, 0).map_err(io::Error::other)?;
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read `count` entries from index `first` on, in as few syscalls as the kernel allows.
pub fn lookup<V: Pod>(map: &Array<MapData, V>, first: u32, count: u32) -> io::Result<Vec<V>> {
    // The kernel copies its own value size per entry: it must be V's (the pinned-map table
    // and the layout check make it so; a mismatch would misread every entry after the first).
    let value_size = map.map().info().map_err(io::Error::other)?.value_size() as usize;
    if value_size != std::mem::size_of::<V>() {
        return Err(io::Error::other(format!(
            "the map's values are {value_size} bytes, this lb reads {}",
            std::mem::size_of::<V>()
        )));
    }
    let fd = map.map().fd().as_fd().as_raw_fd();
    let mut values = Vec::with_capacity(count as usize);
    while (values.len() as u32) < count {
        let at = first + values.len() as u32;
        let n = ((count - values.len() as u32) as usize).min(CHUNK);
        match lookup_batch::<V>(fd, at, n) {
            Ok(chunk) if !chunk.is_empty() => values.extend(chunk),
            Ok(_) => return Err(io::Error::other(format!("no entry at index {at}: past the end of the array"))),
            // No batch support for this map here: one lookup per entry.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOTSUP) | Some(524)) => {
                for i in at..first + count {
                    values.push(map.get(&i, 0).map_err(io::Error::other)?);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(values)
}

/// Up to `n` entries from index `at` on. The kernel's cursor (`in_batch`) is the key
/// before the first one wanted; none starts at index 0.
fn lookup_batch<V: Pod>(fd: i32, at: u32, n: usize) -> io::Result<Vec<V>> {
    let before = at.wrapping_sub(1);
    let mut after = 0u32;
    let mut keys = vec![0u32; n];
    // SAFETY: V is Pod: plain bytes, for which all zeroes is a value.
    let mut values = vec![unsafe { std::mem::zeroed::<V>() }; n];
    let mut attr = BatchAttr {
        in_batch: if at == 0 { 0 } else { &before as *const u32 as u64 },
        out_batch: &mut after as *mut u32 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: n as u32,
        map_fd: fd as u32,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid bpf_attr prefix of the size passed; `keys` has room for
    // `count` u32 and `values` for `count` values of the map's size (checked by `lookup`),
    // `before`/`after` for one key each; all outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_BATCH,
            &mut attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>() as u32,
        )
    };
    // ENOENT: the end of the array was reached; `count` says how many were read before it.
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOENT) {
            return Err(e);
        }
    }
    let got = attr.count as usize;
    if keys[..got].iter().enumerate().any(|(i, &k)| k != at + i as u32) {
        return Err(io::Error::other("BPF_MAP_LOOKUP_BATCH returned the entries out of order"));
    }
    values.truncate(got);
    Ok(values)
}

fn update_batch(fd: i32, keys: &[u32], values: &[u32]) -> io::Result<()> {
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: keys.len() as u32,
        map_fd: fd as u32,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid bpf_attr prefix of the size passed; `keys` and `values`
    // hold `count` u32 each and outlive the call; the kernel only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_BATCH,
            &mut attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
