//! The shared region: file lifecycle, header, and handing out ring halves.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};

use super::layout::{
    Dir, Layout, RawHeader, HEADER_LEN, MAGIC, OFF_GENERATION, OFF_MAGIC, OFF_PID, OFF_SHARDS,
    OFF_SLOTS, OFF_SLOT_SIZE, OFF_TOTAL_LEN, OFF_VERSION,
};
use super::ring::{Consumer, Producer, RingRef};
use super::{RingConfig, ShmError, SHM_VERSION};

/// Shared state behind every handle: the mapping and, for control, the
/// locked file. Endpoints hold an `Arc` to it, so the mapping (and the
/// attach lock) live until the last endpoint is dropped.
#[derive(Debug)]
pub(super) struct Inner {
    map: MmapRaw,
    pub(super) layout: Layout,
    generation: u64,
    pid: u32,
    /// Keeps the descriptor (and, for control, its flock) open.
    _file: File,
    /// Per shard: `[dataplane side taken, control side taken]`.
    taken: Box<[AtomicBool]>,
}

impl Inner {
    pub(super) fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    pub(super) fn map_len(&self) -> usize {
        self.map.len()
    }

    /// Atomic view of a u64 at `off`. Offsets come from [`Layout`], so the
    /// asserts are invariants (kept as real asserts: they guard soundness and
    /// cost one compare).
    pub(super) fn atomic_u64(&self, off: usize) -> &AtomicU64 {
        assert!(off.is_multiple_of(8) && off + 8 <= self.map.len());
        // SAFETY: in bounds and 8-aligned (the mapping is page-aligned); the
        // mapping lives as long as `self`; these words are only ever accessed
        // atomically (by us and by the peer process running this code).
        unsafe { AtomicU64::from_ptr(self.base().add(off).cast()) }
    }

    /// Atomic view of a u32 at `off`; see [`Inner::atomic_u64`].
    pub(super) fn atomic_u32(&self, off: usize) -> &AtomicU32 {
        assert!(off.is_multiple_of(4) && off + 4 <= self.map.len());
        // SAFETY: as for `atomic_u64`, with 4-byte alignment.
        unsafe { AtomicU32::from_ptr(self.base().add(off).cast()) }
    }
}

/// A mapped ring region (see the module docs). Cheap to keep around; drop it
/// (and its endpoints) to unmap and, for control, release the attach lock.
#[derive(Debug)]
pub struct ShmRegion {
    inner: Arc<Inner>,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ShmError + 'a {
    move |source| ShmError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Sibling temp file the dataplane builds before renaming it into place.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp.{}", std::process::id()));
    PathBuf::from(name)
}

/// Reads and decodes the header bytes of an open file.
fn read_header(file: &File, path: &Path) -> Result<(RawHeader, u64), ShmError> {
    let file_len = file.metadata().map_err(io_err("stat", path))?.len();
    if file_len < HEADER_LEN as u64 {
        return Err(ShmError::Truncated {
            expected: HEADER_LEN as u64,
            actual: file_len,
        });
    }
    let mut buf = [0u8; HEADER_LEN];
    file.read_exact_at(&mut buf, 0)
        .map_err(io_err("read header", path))?;
    Ok((RawHeader::decode(&buf), file_len))
}

impl ShmRegion {
    /// Dataplane: creates the region, replacing any stale file from a crashed
    /// run, and stamps a fresh random `generation` so a control process can
    /// tell a new dataplane from the one it knew.
    ///
    /// The region is built in a sibling temp file and renamed over `path`.
    /// Truncating the old file in place would SIGBUS any process still mapping
    /// it, and a control attaching mid-initialisation would see a half-written
    /// header; the rename avoids both. Whoever still maps the old file keeps
    /// a valid (orphaned) mapping.
    pub fn create(path: &Path, cfg: &RingConfig) -> Result<ShmRegion, ShmError> {
        let layout = Layout::new(cfg)?;
        let old_generation = Self::peek_generation(path).ok();
        let generation = loop {
            let g: u64 = rand::random();
            if g != 0 && Some(g) != old_generation {
                break g;
            }
        };
        let tmp = tmp_path(path);
        // Leftover from a crash during an earlier create by a process that
        // had our pid; safe to discard.
        let _ = fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        let built = Self::init(file, &tmp, layout, generation).and_then(|region| {
            fs::rename(&tmp, path)
                .map(|()| region)
                .map_err(io_err("rename", path))
        });
        if built.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        built
    }

    /// Sizes the fresh (zero-filled) file, maps it and writes the header.
    /// Ring indices start at zero thanks to the zero fill.
    fn init(
        file: File,
        path: &Path,
        layout: Layout,
        generation: u64,
    ) -> Result<ShmRegion, ShmError> {
        file.set_len(layout.total_len as u64)
            .map_err(io_err("resize", path))?;
        let map = MmapOptions::new()
            .len(layout.total_len)
            .map_raw(&file)
            .map_err(io_err("mmap", path))?;
        let pid = std::process::id();
        let region = ShmRegion::from_parts(map, layout, generation, pid, file);
        let i = &region.inner;
        i.atomic_u32(OFF_VERSION)
            .store(SHM_VERSION, Ordering::Relaxed);
        i.atomic_u32(OFF_SHARDS)
            .store(layout.shards as u32, Ordering::Relaxed);
        i.atomic_u32(OFF_SLOTS)
            .store(layout.slots, Ordering::Relaxed);
        i.atomic_u32(OFF_SLOT_SIZE)
            .store(layout.slot_size, Ordering::Relaxed);
        i.atomic_u64(OFF_GENERATION)
            .store(generation, Ordering::Relaxed);
        i.atomic_u32(OFF_PID).store(pid, Ordering::Relaxed);
        i.atomic_u64(OFF_TOTAL_LEN)
            .store(layout.total_len as u64, Ordering::Relaxed);
        // Magic last: a header with magic is a complete header.
        i.atomic_u64(OFF_MAGIC)
            .store(u64::from_le_bytes(MAGIC), Ordering::Release);
        Ok(region)
    }

    fn from_parts(
        map: MmapRaw,
        layout: Layout,
        generation: u64,
        pid: u32,
        file: File,
    ) -> ShmRegion {
        let taken = (0..layout.shards * 2)
            .map(|_| AtomicBool::new(false))
            .collect();
        ShmRegion {
            inner: Arc::new(Inner {
                map,
                layout,
                generation,
                pid,
                _file: file,
                taken,
            }),
        }
    }

    /// Control: opens an existing region, validates it, and takes an exclusive
    /// non-blocking `flock` so two controls cannot drive the same rings. The
    /// kernel drops the lock when the process dies, so a restarted control
    /// can attach at once; ring indices are in the region, so it continues
    /// where its predecessor stopped.
    pub fn attach(path: &Path) -> Result<ShmRegion, ShmError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_err("open", path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(ShmError::AlreadyAttached),
            Err(fs::TryLockError::Error(e)) => return Err(io_err("flock", path)(e)),
        }
        let (raw, file_len) = read_header(&file, path)?;
        let layout = raw.validate(file_len)?;
        let map = MmapOptions::new()
            .len(layout.total_len)
            .map_raw(&file)
            .map_err(io_err("mmap", path))?;
        Ok(ShmRegion::from_parts(
            map,
            layout,
            raw.generation,
            raw.pid,
            file,
        ))
    }

    /// Reads the generation of whatever region is at `path` now, without
    /// attaching. Control polls this to notice that the dataplane restarted
    /// (the value differs from [`ShmRegion::generation`] of its mapping).
    pub fn peek_generation(path: &Path) -> Result<u64, ShmError> {
        let file = File::open(path).map_err(io_err("open", path))?;
        let (raw, _) = read_header(&file, path)?;
        raw.check_identity()?;
        Ok(raw.generation)
    }

    /// Number of shards (each has one ring per direction).
    pub fn shards(&self) -> usize {
        self.inner.layout.shards
    }

    /// Random id of the dataplane run that created the region.
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }

    /// Pid of the dataplane that created the region.
    pub fn dataplane_pid(&self) -> u32 {
        self.inner.pid
    }

    /// Marks one side of a shard as taken; `None` if out of range or taken.
    fn take(&self, shard: usize, side: usize) -> Option<()> {
        if shard >= self.shards() {
            return None;
        }
        let flag = self.inner.taken.get(shard * 2 + side)?;
        (!flag.swap(true, Ordering::AcqRel)).then_some(())
    }

    fn ring(&self, shard: usize, dir: Dir) -> RingRef {
        RingRef::new(
            Arc::clone(&self.inner),
            self.inner.layout.ring_offset(shard, dir),
            dir == Dir::ShardToCtl,
        )
    }

    /// Dataplane side of shard `shard`: (producer of `shard_to_ctl`, consumer
    /// of `ctl_to_shard`). Once per region; later calls return `None`.
    pub fn dataplane_endpoints(&self, shard: usize) -> Option<(Producer, Consumer)> {
        self.take(shard, 0)?;
        Some((
            Producer::new(self.ring(shard, Dir::ShardToCtl)),
            Consumer::new(self.ring(shard, Dir::CtlToShard)),
        ))
    }

    /// Control side of shard `shard`: (producer of `ctl_to_shard`, consumer
    /// of `shard_to_ctl`). Once per region; later calls return `None`.
    pub fn control_endpoints(&self, shard: usize) -> Option<(Producer, Consumer)> {
        self.take(shard, 1)?;
        Some((
            Producer::new(self.ring(shard, Dir::CtlToShard)),
            Consumer::new(self.ring(shard, Dir::ShardToCtl)),
        ))
    }
}
