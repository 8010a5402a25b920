//! Disks on the host: the local image cache, instance overlays and config drives.

pub mod config_drive;
pub mod image_cache;
pub mod overlay;

pub use image_cache::ImageCache;
