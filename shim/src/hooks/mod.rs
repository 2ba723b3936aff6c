//! The exported hooks, one file per family. Each hook is declared once with
//! `macros::hooks!`; its implementation returns `guard::Outcome`.

pub mod exec;
pub mod fcntl;
pub mod fd;
pub mod msg;
pub mod socket;
pub mod sockopt;
#[cfg(target_os = "linux")]
pub mod write;

/// Resolves every original function (in the constructor, before threads).
pub fn resolve_all() {
    socket::resolve_all();
    sockopt::resolve_all();
    fd::resolve_all();
    msg::resolve_all();
    fcntl::resolve_all();
    exec::resolve_all();
    #[cfg(target_os = "linux")]
    write::resolve_all();
}
