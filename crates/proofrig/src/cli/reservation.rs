//! `proofrig reserve RIG [--minutes N]`, `proofrig extend RIG --minutes N`,
//! `proofrig release RIG`: a technician's hold on a rig for manual work, in the same
//! scheduler as the queue (no job starts on a reserved rig but its holder's). A
//! reservation expires unless extended; the server bounds its length.

use proofrig_proto::api::{ReservationView, Reserve};
use reqwest::Method;

use super::client::{time, Client, Connection};
use super::{Failure, EXIT_OK};

/// Which of the three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Reserve,
    Extend,
    Release,
}

pub async fn hold(what: Hold, rig: &str, minutes: Option<u32>, connection: &Connection) -> Result<u8, Failure> {
    let client = Client::new(connection)?;
    let path = ["api", "rigs", rig, "reservation"];
    let body = Reserve { minutes };
    match what {
        Hold::Reserve | Hold::Extend => {
            let (method, doing) = match what {
                Hold::Reserve => (Method::POST, "reserving"),
                _ => (Method::PUT, "extending the reservation of"),
            };
            let held: ReservationView = client.json(method, &path, Some(&body), &format!("{doing} {rig}")).await?;
            println!("{} reserved by {} until {} (fencing token {})", held.rig, held.holder, time(held.until), held.fencing.0);
        }
        Hold::Release => {
            client.send(Method::DELETE, client.url(&path, None), None::<&()>, &format!("releasing {rig}")).await?;
            println!("{rig} released");
        }
    }
    Ok(EXIT_OK)
}
