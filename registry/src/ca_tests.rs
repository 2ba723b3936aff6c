//! Tests of the local CA: creation, reload, leaves, refusals.

use super::*;
use crate::testutil::TempDir;
use std::os::unix::fs::PermissionsExt;

fn home(t: &TempDir) -> Home {
    Home::at(t.path().join("home")).unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn creates_a_private_root_once_and_reloads_it() {
    let t = TempDir::new("ca");
    let h = home(&t);
    let first = Authority::load_or_create(&h).unwrap();
    assert_eq!(mode(&dir(&h)), 0o700);
    assert_eq!(mode(&root_key(&h)), 0o600);
    let again = Authority::load_or_create(&h).unwrap();
    assert_eq!(first.cert_pem(), again.cert_pem(), "an existing root is kept");
    assert_eq!(Authority::load(&h).unwrap().unwrap().id(), first.id());
    assert!(first.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
}

#[test]
fn nothing_is_created_by_load() {
    let t = TempDir::new("ca");
    let h = home(&t);
    assert!(Authority::load(&h).unwrap().is_none());
    assert!(!dir(&h).exists());
}

#[test]
fn leaves_name_exactly_the_host_and_are_cached_on_disk() {
    let t = TempDir::new("ca");
    let h = home(&t);
    let ca = Authority::load_or_create(&h).unwrap();
    let leaf = ca.leaf("main.shop.localhost").unwrap();
    let der = pem_body(&leaf.cert_pem, "CERTIFICATE").unwrap();
    assert!(contains(&der, b"main.shop.localhost"));
    assert!(!contains(&der, b"*."), "no wildcard");
    let again = ca.leaf("main.shop.localhost").unwrap();
    assert_eq!(leaf.cert_pem, again.cert_pem, "the second call reads the cached leaf");
    assert!(ca.leaf("../etc").is_err());
    assert!(ca.leaf("Evil.com").is_err());
}

#[test]
fn a_corrupt_or_half_ca_is_an_error_naming_the_file_never_replaced() {
    let t = TempDir::new("ca");
    let h = home(&t);
    Authority::load_or_create(&h).unwrap();
    fs::write(root_key(&h), b"garbage").unwrap();
    let err = Authority::load_or_create(&h).unwrap_err().to_string();
    assert!(err.contains("root.key") && err.contains("fix:"), "{err}");
    assert_eq!(fs::read(root_key(&h)).unwrap(), b"garbage", "never replaced");
    fs::remove_file(root_key(&h)).unwrap();
    let err = Authority::load_or_create(&h).unwrap_err().to_string();
    assert!(err.contains("root.key") && err.contains("missing"), "{err}");
}

#[test]
fn a_root_pem_of_another_key_is_refused() {
    let t = TempDir::new("ca");
    let (a, b) = (Home::at(t.path().join("a")).unwrap(), Home::at(t.path().join("b")).unwrap());
    Authority::load_or_create(&a).unwrap();
    Authority::load_or_create(&b).unwrap();
    fs::copy(root_pem(&a), root_pem(&b)).unwrap();
    let err = Authority::load_or_create(&b).unwrap_err().to_string();
    assert!(err.contains("root.pem") && err.contains("not the one"), "{err}");
}

#[test]
fn prune_keeps_the_newest_files_up_to_the_cap() {
    let t = TempDir::new("ca");
    let old = SystemTime::now() - DAY;
    for i in 0..5 {
        let p = t.path().join(format!("h{i}.pem"));
        fs::write(&p, "x").unwrap();
        let f = fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(old + Duration::from_secs(i)).unwrap();
    }
    prune(t.path(), 3);
    let mut left: Vec<_> = fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert_eq!(left, ["h2.pem", "h3.pem", "h4.pem"]);
    prune(t.path(), 3);
    assert_eq!(fs::read_dir(t.path()).unwrap().count(), 3, "nothing more at the cap");
}
