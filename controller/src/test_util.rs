//! Helpers shared by the crate's tests: a glommio executor and temp dirs that support O_DIRECT.

use std::future::Future;
use std::path::Path;

/// Runs `f` on a fresh glommio executor on this thread.
pub(crate) fn run<F: Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(f());
}

/// A temp dir under the target dir: /tmp may be tmpfs, which has no O_DIRECT.
pub(crate) fn temp_dir() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/skein-test-tmp");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}
