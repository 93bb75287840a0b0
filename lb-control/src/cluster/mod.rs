//! A node of a fleet: announcing its VIPs by BGP (`announce` decides what, `bird` writes
//! and reads BIRD's files and answers, `speaker` runs BIRD and feeds it).
pub mod announce;
pub mod bird;
pub mod speaker;

pub use announce::{announcement, Announcement};
pub use speaker::SpeakerThread;
