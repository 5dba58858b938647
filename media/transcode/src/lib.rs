//! rts-transcode (work in progress).
