//! The packet-test kit: frames built from scratch (`packet`) and the real XDP object loaded
//! with its maps written by this crate's own code (`harness`), run through
//! BPF_PROG_TEST_RUN. Used by lb-xdp's packet tests and its data-path benchmark; the
//! daemon never calls it.
pub mod harness;
pub mod packet;
