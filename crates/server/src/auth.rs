//! Users, roles and credentials of the client ports (HTTP and RESP).
//!
//! The users file is TOML: `[users.NAME]` with `password = "..."` (or `password_sha256 =
//! "HEX"`, so the file need not hold the password itself) and `role = "read" | "write" |
//! "admin"`. Passwords are kept as SHA-256 digests and compared in constant time; a lookup of
//! an unknown user costs the same as a wrong password, so timing tells no names.
//!
//! Roles nest: `read` reads keys and watches the cluster (`/metrics`, `/cluster`), `write` also
//! writes, `admin` also changes the node (`/admin/*`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

#[derive(Clone)]
struct User {
    password_sha256: [u8; 32],
    role: Role,
}

/// The users of a node, from its users file.
#[derive(Clone, Default)]
pub struct Users {
    users: BTreeMap<String, User>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.users.keys()).finish()
    }
}

/// Users a file may hold at most, and the longest name and password it may give.
const USERS_MAX: usize = 10_000;
const NAME_BYTES_MAX: usize = 256;
/// The longest credential a client may send (name or password); longer is refused unread.
pub const CREDENTIAL_BYTES_MAX: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUsers {
    #[serde(default)]
    users: BTreeMap<String, FileUser>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUser {
    password: Option<String>,
    password_sha256: Option<String>,
    role: String,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

impl Users {
    pub fn load(path: &Path) -> Result<Users, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read users file {}: {e}", path.display()))?;
        Users::parse(&text).map_err(|e| format!("users file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Users, String> {
        let file: FileUsers = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.users.is_empty() {
            return Err("it names no user ([users.NAME] with password and role)".into());
        }
        if file.users.len() > USERS_MAX {
            return Err(format!("at most {USERS_MAX} users"));
        }
        let mut users = BTreeMap::new();
        for (name, u) in file.users {
            if name.is_empty() || name.len() > NAME_BYTES_MAX || name.contains(':') {
                return Err(format!(
                    "user name {name:?} must be 1 to {NAME_BYTES_MAX} bytes without ':'"
                ));
            }
            let role = match u.role.as_str() {
                "read" => Role::Read,
                "write" => Role::Write,
                "admin" => Role::Admin,
                other => {
                    return Err(format!(
                        "users.{name}.role {other:?}: use \"read\", \"write\" or \"admin\""
                    ));
                }
            };
            let password_sha256 = match (u.password, u.password_sha256) {
                (Some(p), None) if !p.is_empty() && p.len() <= CREDENTIAL_BYTES_MAX => {
                    sha256(p.as_bytes())
                }
                (None, Some(h)) => hex32(&h).ok_or_else(|| {
                    format!("users.{name}.password_sha256 must be 64 hexadecimal digits")
                })?,
                _ => {
                    return Err(format!(
                        "users.{name} needs exactly one of password (1 to {CREDENTIAL_BYTES_MAX} bytes) or password_sha256"
                    ));
                }
            };
            users.insert(
                name,
                User {
                    password_sha256,
                    role,
                },
            );
        }
        Ok(Users { users })
    }

    /// The role of `name` if `password` is its password.
    pub fn check(&self, name: &[u8], password: &[u8]) -> Option<Role> {
        if name.len() > CREDENTIAL_BYTES_MAX || password.len() > CREDENTIAL_BYTES_MAX {
            return None;
        }
        let given = sha256(password);
        let user = std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.users.get(n));
        // An unknown user is compared against a digest no password has, in the same time.
        let (expected, role) = match user {
            Some(u) => (u.password_sha256, Some(u.role)),
            None => ([0u8; 32], None),
        };
        let equal: bool = given.ct_eq(&expected).into();
        if equal { role } else { None }
    }

    /// Checks an HTTP `Authorization` header (Basic).
    pub fn check_basic(&self, header: &[u8]) -> Option<Role> {
        use base64::Engine;
        if header.len() > 4 * CREDENTIAL_BYTES_MAX {
            return None;
        }
        let text = std::str::from_utf8(header).ok()?.trim();
        let (scheme, encoded) = text.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let at = decoded.iter().position(|&b| b == b':')?;
        self.check(&decoded[..at], &decoded[at + 1..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[users.root]
password = "r00t"
role = "admin"

[users.app]
password_sha256 = "6ca13d52ca70c883e0f0bb101e425a89e8624de51db2d2392593af6a84118090"
role = "write"
"#;

    #[test]
    fn passwords_and_roles_are_checked() {
        let users = Users::parse(FILE).unwrap();
        assert_eq!(users.check(b"root", b"r00t"), Some(Role::Admin));
        assert_eq!(users.check(b"root", b"r00t "), None);
        assert_eq!(users.check(b"nobody", b"r00t"), None);
        // sha256("abc123")
        assert_eq!(users.check(b"app", b"abc123"), Some(Role::Write));
        assert!(Role::Admin > Role::Write && Role::Write > Role::Read);
    }

    #[test]
    fn basic_headers_are_parsed_strictly() {
        use base64::Engine;
        let users = Users::parse(FILE).unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let header = format!("Basic {}", b64("root:r00t"));
        assert_eq!(users.check_basic(header.as_bytes()), Some(Role::Admin));
        assert_eq!(
            users.check_basic(format!("basic {}", b64("root:r00t")).as_bytes()),
            Some(Role::Admin)
        );
        for bad in [
            format!("Bearer {}", b64("root:r00t")),
            format!("Basic {}", b64("rootr00t")),
            "Basic !!!".to_string(),
            "Basic".to_string(),
            format!("Basic {}", b64(&format!("root:{}", "x".repeat(5000)))),
        ] {
            assert_eq!(users.check_basic(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn mistakes_in_the_file_are_named() {
        for (text, want) in [
            ("", "names no user"),
            ("[users.a]\npassword = \"x\"\nrole = \"god\"\n", "role"),
            ("[users.a]\nrole = \"read\"\n", "exactly one of password"),
            (
                "[users.a]\npassword_sha256 = \"zz\"\nrole = \"read\"\n",
                "64 hexadecimal",
            ),
            (
                "[users.\"a:b\"]\npassword = \"x\"\nrole = \"read\"\n",
                "without ':'",
            ),
            (
                "[users.a]\npasword = \"x\"\nrole = \"read\"\n",
                "unknown field",
            ),
        ] {
            let err = Users::parse(text).err().unwrap_or_default();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
