//! Disks on the host: the local image cache and instance overlays.

pub mod image_cache;
pub mod overlay;

pub use image_cache::ImageCache;
