#![no_std]
// The XDP program is the `lb` binary of this crate; this empty library exists so lb-user can
// name the crate as a build dependency (cargo then rebuilds lb-user when it changes).
