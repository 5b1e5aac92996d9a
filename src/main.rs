fn main() {
    println!("smelt");
}
