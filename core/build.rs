//! Records the target triple diffy is built for, so `diffy plugin package` can label archives and
//! `diffy plugin install` can refuse an archive built for another platform.

fn main() {
    let target = std::env::var("TARGET").expect("cargo sets TARGET for build scripts");
    println!("cargo:rustc-env=DIFFY_TARGET_TRIPLE={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
