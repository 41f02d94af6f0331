fn main() {
    println!("osteon {} ({})", env!("CARGO_PKG_VERSION"), osteon::torch_info::describe());
}
