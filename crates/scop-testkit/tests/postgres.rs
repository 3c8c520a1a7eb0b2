//! The throw-away PostgreSQL server starts, serves fresh databases, and
//! leaves nothing behind when dropped.

use scop_testkit::postgres::TestServer;

#[test]
fn starts_serves_and_cleans_up() {
    let server = TestServer::start();
    let socket_dir = server.socket_dir().to_path_buf();
    assert!(socket_dir.join(".s.PGSQL.5432").exists());
    let a = server.create_database();
    let b = server.create_database();
    assert_ne!(a, b);
    let name = a
        .split("localhost/")
        .nth(1)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(server.psql(&name, "SELECT 40 + 2").trim(), "42");
    // no TCP listener: the server only has its Unix socket
    assert_eq!(server.psql(&name, "SHOW listen_addresses").trim(), "");
    assert_eq!(
        server
            .psql(
                &name,
                "SELECT current_setting('server_version_num')::int / 10000"
            )
            .trim(),
        "15"
    );
    drop(server);
    let root = socket_dir.parent().unwrap();
    assert!(
        !root.exists(),
        "{} should be removed on drop",
        root.display()
    );
}
