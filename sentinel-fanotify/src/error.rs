//! The crate's errors: one line each, saying what to do.

use std::io;

use crate::decide::RequestId;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("fanotify is not available in this kernel (CONFIG_FANOTIFY is off)")]
    Unavailable,
    #[error("fanotify permission events are not supported by this kernel (CONFIG_FANOTIFY_ACCESS_PERMISSIONS)")]
    NoPermissionEvents,
    #[error("fanotify permission events need CAP_SYS_ADMIN: run the guard as root")]
    NotPermitted,
    #[error("too many fanotify groups for this user (fs.fanotify.max_user_groups): stop another fanotify user or raise the limit")]
    TooManyGroups,
    #[error("{what} failed: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("could not start the guard's {name} thread: {source}")]
    Thread {
        name: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("request {0} is not pending: it was already answered (resolved, timed out, or its process went away)")]
    NotPending(RequestId),
    #[error("the fanotify guard has stopped")]
    Stopped,
}

impl Error {
    pub(crate) fn sys(what: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Sys { what, source }
    }
}
