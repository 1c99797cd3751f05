//! Threads that each run one single-threaded tokio runtime (the proxy's workers, the health
//! checker, the Admin API): no work stealing, no cross-thread wake-ups.

use std::future::Future;

/// Start a thread named `name` that runs the future `task` makes on a runtime of its own, and
/// returns when it completes. The future is made on the new thread, so it need not be `Send`.
pub fn spawn<F, Fut>(name: String, task: F) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    std::thread::Builder::new().name(name).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(thread = ?std::thread::current().name(), error = %e, "cannot start a runtime");
                return;
            }
        };
        rt.block_on(task());
    })
}
