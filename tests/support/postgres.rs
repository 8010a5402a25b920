//! Fresh databases on the test run's PostgreSQL server
//! (`scripts/with-postgres.sh` exports where it is).

use std::process::Command;

/// A database made for one test: its name, and the URL that processes in
/// the test's network namespace use.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

/// Creates database `<prefix>_<pid>` through `admin` (the run's
/// `NUBIS_TEST_DATABASE_URL`). The URL goes through the server's unix
/// socket: inside the test's namespace the server's 127.0.0.1 is not
/// reachable.
pub fn create_database(admin: &str, prefix: &str) -> TestDatabase {
    let name = format!("{prefix}_{}", std::process::id());
    let ok = Command::new("psql")
        .arg(admin)
        .args(["-q", "-c", &format!("CREATE DATABASE {name}")])
        .status()
        .expect("psql")
        .success();
    assert!(ok, "creating a test database");
    let socket = std::env::var("NUBIS_TEST_DATABASE_SOCKET").expect("socket dir");
    let port = std::env::var("NUBIS_TEST_DATABASE_PORT").expect("port");
    let url = format!("postgres://nubis:nubis@localhost:{port}/{name}?host={socket}");
    TestDatabase { name, url }
}
