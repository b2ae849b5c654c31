//! The manifests directory -> `Desired`: the manifest format and its
//! schema, the directory walk and its holds, the declared stack, the
//! revision. Knows only `model`; never Docker, sled or a socket.

pub mod desired;
pub mod manifest;
pub mod revision;
pub mod stack;
