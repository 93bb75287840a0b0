#![no_std]
// The XDP program is the `lb` binary of this crate; this empty library exists so lb-xdp can
// name the crate as a build dependency (cargo then rebuilds lb-xdp when it changes).
