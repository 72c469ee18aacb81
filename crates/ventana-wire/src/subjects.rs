//! NATS names: streams, subjects, headers and message ids. Nobody else formats a subject.

use ventana_core::{ConversationKey, ConversationToken};

/// The log of input events.
pub const IN_STREAM: &str = "VENTANA_IN";
/// Outputs, published from the outbox.
pub const OUT_STREAM: &str = "VENTANA_OUT";
/// Copies of bad input, with the reason.
pub const DLQ_STREAM: &str = "VENTANA_DLQ";
/// The subjects of [`IN_STREAM`].
pub const IN_SUBJECTS: &str = "ventana.in.>";
/// The subjects of [`OUT_STREAM`].
pub const OUT_SUBJECTS: &str = "ventana.out.>";
/// The subjects of [`DLQ_STREAM`].
pub const DLQ_SUBJECTS: &str = "ventana.dlq.>";
/// The protobuf copies of VENTANA_OUT's outputs (`OutputEvent`), when ventanad makes them.
pub const OUT_PROTOBUF_STREAM: &str = "VENTANA_OUT_PROTOBUF";
/// Subjects of [`OUT_PROTOBUF_STREAM`]: `ventana.pb.out.<type>.<token>`.
pub const OUT_PROTOBUF_SUBJECTS: &str = "ventana.pb.out.>";
/// On a protobuf copy: the VENTANA_OUT sequence of the output it copies.
pub const OUT_SEQUENCE_HEADER: &str = "Ventana-Out-Sequence";
/// The prefix of the durable consumers ventanad instances fold `VENTANA_IN` with (and the
/// name of the one consumer of versions before instances).
pub const CONSUMER: &str = "ventanad";

/// The durable consumer of VENTANA_IN of the ventanad instance `instance`: every instance
/// folds the whole log into its own store.
pub fn consumer_name(instance: &str) -> String {
    format!("{CONSUMER}-{instance}")
}

/// The key-value bucket of leases: which ventanad instance publishes each partition's
/// outputs (`partition.<p>`), and which instances are alive (`instance.<name>`).
pub const LEASE_BUCKET: &str = "VENTANA_LEASES";
/// The subjects of fences, in VENTANA_OUT (outside `ventana.out.>`).
pub const FENCE_SUBJECTS: &str = "ventana.fence.>";

/// `ventana.fence.<partition>`: the fence of one partition's outputs. The instance that
/// takes the partition's lease publishes a fence here first; every batch of the partition's
/// outputs expects the last message here to be its owner's and ends with a mark here saying
/// how far the partition's outputs go, so a later fence makes the server refuse the rest.
pub fn partition_fence(partition: u32) -> String {
    format!("ventana.fence.{partition}")
}

/// The lease key of a partition in [`LEASE_BUCKET`].
pub fn partition_lease(partition: u32) -> String {
    format!("partition.{partition}")
}

/// The prefix of the live instances' keys in [`LEASE_BUCKET`].
pub const MEMBER_LEASE_PREFIX: &str = "instance.";

/// The key in [`LEASE_BUCKET`] saying that `instance` (a checked instance name) is alive.
pub fn member_lease(instance: &str) -> String {
    format!("{MEMBER_LEASE_PREFIX}{instance}")
}

/// On an output: the ventanad instance that published it.
pub const INSTANCE_HEADER: &str = "Ventana-Instance";

/// The headers of JetStream's atomic batches: every message of a batch carries its id and
/// its place (from 1); the last one commits the batch, and only it is acknowledged.
pub const BATCH_ID: &str = "Nats-Batch-Id";
/// See [`BATCH_ID`].
pub const BATCH_SEQUENCE: &str = "Nats-Batch-Sequence";
/// See [`BATCH_ID`].
pub const BATCH_COMMIT: &str = "Nats-Batch-Commit";

/// The header JetStream deduplicates publishes by.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// The header each output carries its outbox position in (input stream sequence << 16 |
/// index): outputs reach `VENTANA_OUT` in that order, so the last one says what is there.
pub const POSITION_HEADER: &str = "Ventana-Position";
/// The header a DLQ copy carries its reason in (and the error in `Ventana-Error`).
pub const REASON_HEADER: &str = "Ventana-Reason";
/// The header a DLQ copy carries the error's description in (at most 256 bytes, never the
/// input's text).
pub const ERROR_HEADER: &str = "Ventana-Error";
/// The header a DLQ copy carries the bad input's subject in.
pub const DLQ_SUBJECT_HEADER: &str = "Ventana-Subject";
/// The header naming the stream a DLQ copy's original is kept in (`VENTANA_IN`).
pub const DLQ_STREAM_HEADER: &str = "Ventana-Stream";
/// The header with the original's stream sequence: a copy by reference (oversize input, or
/// one the DLQ refused whole) has an empty payload and is read back from there.
pub const DLQ_SEQUENCE_HEADER: &str = "Ventana-Sequence";
/// The header with the original payload's size in bytes.
pub const DLQ_SIZE_HEADER: &str = "Ventana-Size";

/// The request-reply API (NATS services framework).
pub const SERVICE_NAME: &str = "ventana";
/// A conversation's snapshot now.
pub const API_STATE: &str = "ventana.api.v1.state";
/// What would be decided for a message now, logging nothing.
pub const API_CHECK: &str = "ventana.api.v1.check";
/// Logs an outbound message and answers its decision.
pub const API_SEND: &str = "ventana.api.v1.send";
/// Conversations whose window closes soon, a page at a time.
pub const API_EXPIRING: &str = "ventana.api.v1.expiring";
/// A conversation's token, partition and input subject.
pub const API_RESOLVE: &str = "ventana.api.v1.resolve";
/// The decision published for a message id.
pub const API_DECISION: &str = "ventana.api.v1.decision";

/// Default number of input partitions.
pub const DEFAULT_PARTITIONS: u32 = 16;

/// `ventana.in.<partition>.<token>`: where an adapter publishes a conversation's events.
pub fn input_subject(key: &ConversationKey, partitions: u32) -> String {
    input_subject_of(key.token(), partitions)
}

/// [`input_subject`] for a conversation known by its token.
pub fn input_subject_of(token: ConversationToken, partitions: u32) -> String {
    format!("ventana.in.{}.{token}", token.partition(partitions))
}

/// The partition and token of an input subject, if it is one (the partition as written,
/// not checked against the token).
pub fn parts_of_input_subject(subject: &str) -> Option<(u32, ConversationToken)> {
    let mut parts = subject.split('.');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("ventana"), Some("in"), Some(partition), Some(token), None) => {
            Some((partition.parse().ok()?, ConversationToken::parse(token)?))
        }
        _ => None,
    }
}

/// The token of an input subject, if it is one.
pub fn token_of_input_subject(subject: &str) -> Option<ConversationToken> {
    parts_of_input_subject(subject).map(|(_, token)| token)
}

/// The token of an output subject (`ventana.out.<type>.<token>`), if it is one.
pub fn token_of_output_subject(subject: &str) -> Option<ConversationToken> {
    let rest = subject.strip_prefix("ventana.out.")?;
    let (_, token) = rest.split_once('.')?;
    ConversationToken::parse(token)
}

/// `ventana.out.<type>.<token>`.
pub fn output_subject(output_type: &str, token: ConversationToken) -> String {
    format!("ventana.out.{output_type}.{token}")
}

/// `ventana.pb.out.<type>.<token>`: the protobuf copy of an output (stream
/// [`OUT_PROTOBUF_STREAM`]).
pub fn protobuf_output_subject(output_type: &str, token: ConversationToken) -> String {
    format!("ventana.pb.out.{output_type}.{token}")
}

/// `ventana.dlq.<reason>`.
pub fn dlq_subject(reason: &str) -> String {
    format!("ventana.dlq.{reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_subject_gives_its_token_back() {
        let token = ConversationToken::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        assert_eq!(
            token_of_output_subject(&output_subject("state_changed", token)),
            Some(token)
        );
        assert_eq!(token_of_output_subject(&partition_fence(3)), None);
        assert_eq!(token_of_output_subject("ventana.out.state_changed"), None);
        assert_eq!(token_of_output_subject("ventana.out.x.not-a-token"), None);
    }

    /// docs/api.md's test vectors are what the code computes (`VENTANA_UPDATE_FIXTURES=1`
    /// fills them in).
    #[test]
    fn the_documented_token_vectors_hold() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md");
        let text = std::fs::read_to_string(path).unwrap();
        let start = text
            .find("<!-- token vectors")
            .expect("the vectors' marker");
        let mut rows = 0;
        let mut updated = text[..start].to_owned();
        let mut in_table = true;
        for line in text[start..].split_inclusive('\n') {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let is_row =
                in_table && line.starts_with("| ") && cells.len() == 6 && cells[0] != "channel";
            if line.trim().is_empty() && rows > 0 {
                in_table = false;
            }
            if !is_row {
                updated.push_str(line);
                continue;
            }
            let channel = ventana_core::Channel::parse(cells[0]).expect("a channel");
            let key = ConversationKey::new(channel, cells[1], cells[2], cells[3]);
            let token = key.token().to_string();
            let subject = input_subject(&key, 16);
            let row = format!(
                "| {} | {} | {} | {} | {token} | {subject} |\n",
                cells[0], cells[1], cells[2], cells[3]
            );
            if std::env::var_os("VENTANA_UPDATE_FIXTURES").is_none() {
                assert_eq!(line, row, "docs/api.md's vector for {key}");
            }
            updated.push_str(&row);
            rows += 1;
        }
        if std::env::var_os("VENTANA_UPDATE_FIXTURES").is_some() {
            std::fs::write(path, updated).unwrap();
        }
        assert_eq!(rows, 6, "every vector was checked");
    }
    use ventana_core::Channel;

    #[test]
    fn input_subjects_carry_partition_and_token() {
        let key = ConversationKey::new(Channel::WhatsApp, "acme", "1", "2");
        let subject = input_subject(&key, 16);
        assert_eq!(
            subject,
            format!("ventana.in.{}.{}", key.token().partition(16), key.token())
        );
        assert_eq!(token_of_input_subject(&subject), Some(key.token()));
        assert_eq!(token_of_input_subject("ventana.out.x.y"), None);
    }
}
