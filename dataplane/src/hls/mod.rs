//! LL-HLS (CMAF) output: the muxer that runs once per stream on its home
//! shard, the fMP4 boxes it writes, and the media playlist the shards
//! serve from its snapshots (decision 019).

pub mod fmp4;
pub mod muxer;
pub mod playlist;

pub use muxer::{HlsMuxer, HlsSnapshot};
