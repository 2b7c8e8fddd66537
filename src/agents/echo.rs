//! The echo agent: replies with the user's text, streamed word by word as one artifact, and
//! ends its turn in the configured state (input-required keeps the task open for more turns).

use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;

use super::{AgentError, AgentEvent, AgentExecutor, RequestContext};
use crate::config::{AgentConfig, EndState};
use crate::protocol::{Artifact, Message, MessageKind, Part, Role, TaskState};

/// Echoes text back.
pub struct Echo {
    end_state: TaskState,
    chunk_delay: Duration,
}

impl Echo {
    /// An echo agent with the configured end state and chunk delay.
    pub fn new(config: &AgentConfig) -> Self {
        let end_state = match config.end_state {
            EndState::InputRequired => TaskState::InputRequired,
            EndState::Completed => TaskState::Completed,
        };
        Echo { end_state, chunk_delay: Duration::from_millis(config.chunk_delay_ms) }
    }
}

/// Splits text into chunks of one word each, keeping the whitespace after every word, so that
/// the chunks concatenate to the original text exactly.
pub fn word_chunks(text: &str) -> Vec<&str> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut in_space = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_space = true;
        } else if in_space {
            if i > start {
                chunks.push(&text[start..i]);
            }
            start = i;
            in_space = false;
        }
    }
    if start < text.len() || chunks.is_empty() {
        chunks.push(&text[start..]);
    }
    chunks
}

impl AgentExecutor for Echo {
    fn execute(&self, ctx: RequestContext) -> BoxStream<'static, Result<AgentEvent, AgentError>> {
        let text = ctx.message.text();
        let task_id = ctx.task.id.clone();
        let context_id = ctx.task.context_id.clone();
        let artifact_id = format!("echo-{}", ctx.message.message_id);
        let chunks: Vec<String> = word_chunks(&text).into_iter().map(str::to_string).collect();
        let count = chunks.len();
        let delay = self.chunk_delay;
        let end_state = self.end_state;
        let artifacts = futures::stream::iter(chunks.into_iter().enumerate()).then(move |(i, chunk)| {
            let artifact_id = artifact_id.clone();
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok(AgentEvent::Artifact {
                    artifact: Artifact {
                        artifact_id,
                        parts: vec![Part::text(chunk)],
                        name: Some("echo".into()),
                        description: None,
                        extensions: None,
                        metadata: None,
                    },
                    append: i > 0,
                    last_chunk: i + 1 == count,
                })
            }
        });
        let reply = Message {
            kind: MessageKind,
            message_id: uuid::Uuid::new_v4().to_string(),
            role: Role::Agent,
            parts: vec![Part::text(text)],
            task_id: Some(task_id),
            context_id: Some(context_id),
            reference_task_ids: None,
            extensions: None,
            metadata: None,
        };
        let done =
            futures::stream::once(async move { Ok(AgentEvent::Done { state: end_state, message: Some(reply) }) });
        artifacts.chain(done).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::word_chunks;

    #[test]
    fn chunks_concatenate_to_the_text() {
        for text in ["hello", "hello world", "  lead and  trail  ", "", "one\ntwo\tthree"] {
            assert_eq!(word_chunks(text).concat(), text);
        }
        assert_eq!(word_chunks("a b c"), vec!["a ", "b ", "c"]);
    }
}
