//! The packet-test kit: frames built from scratch (`packet`) and the real XDP object loaded
//! with its maps written by this crate's own code (`harness`), run through
//! BPF_PROG_TEST_RUN, and where the frames it sends go (`frame`). Used by lb-xdp's packet
//! tests and its data-path benchmark; the daemon never calls it. For the writer's own
//! tests: its maps in memory (`model`), and any store's content as a fresh start would be
//! compared with it (`view`).
pub mod frame;
pub mod harness;
pub mod model;
pub mod packet;
pub mod view;
