fn main() { unimplemented!("benchmark not written yet") }
