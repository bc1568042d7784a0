// `sqlx::migrate!` embeds the migrations at compile time; without this, cargo would not
// rebuild when a migration is added and the binary would silently lack it.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
