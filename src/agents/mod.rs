//! Agent executors: one trait, one file per agent type. Executors turn a request into a stream
//! of events; they never touch the store (the engine persists, fans out and notifies).

pub mod card;
pub mod echo;

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, AgentKind, Config};
use crate::protocol::{Artifact, Message, Task, TaskState};

/// What an executor is asked to do: continue `task` whose newest history entry is `message`.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub task: Task,
    pub message: Message,
    /// Cancelled when the task is canceled; executors should stop promptly.
    pub cancel: CancellationToken,
}

/// Progress an executor reports.
#[derive(Debug, Clone)]
pub enum AgentEvent {
    /// An artifact chunk: `append` extends the artifact with the same id.
    Artifact { artifact: Artifact, append: bool, last_chunk: bool },
    /// The turn ends in `state` (terminal or interrupted) with an optional agent message.
    Done { state: TaskState, message: Option<Message> },
}

/// An executor failed; the engine retries the turn and dead-letters it after the last attempt.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct AgentError(pub String);

/// Runs one turn of a task.
pub trait AgentExecutor: Send + Sync + 'static {
    /// The events of one turn; the stream ends after `Done` (or is dropped on cancel).
    fn execute(&self, ctx: RequestContext) -> BoxStream<'static, Result<AgentEvent, AgentError>>;
}

/// A configured agent: its settings and its executor.
#[derive(Clone)]
pub struct Agent {
    pub name: String,
    pub config: AgentConfig,
    pub executor: Arc<dyn AgentExecutor>,
}

/// Every agent of a configuration, by name, in file order.
#[derive(Clone)]
pub struct AgentRegistry {
    agents: HashMap<String, Arc<Agent>>,
    order: Vec<String>,
    default_agent: String,
}

impl AgentRegistry {
    /// Builds the executors a configuration names.
    pub fn from_config(config: &Config) -> Self {
        let mut agents = HashMap::new();
        let mut order = Vec::new();
        for (name, agent) in &config.agents.0 {
            let executor: Arc<dyn AgentExecutor> = match agent.kind {
                AgentKind::Echo => Arc::new(echo::Echo::new(agent)),
            };
            agents.insert(name.clone(), Arc::new(Agent { name: name.clone(), config: agent.clone(), executor }));
            order.push(name.clone());
        }
        AgentRegistry { agents, order, default_agent: config.default_agent_name().to_string() }
    }

    /// The agent with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<Agent>> {
        self.agents.get(name)
    }

    /// Agents in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Agent> {
        self.order.iter().filter_map(|n| self.agents.get(n).map(|a| a.as_ref()))
    }

    /// The agent served at the host's well-known card.
    pub fn default_agent(&self) -> &str {
        &self.default_agent
    }
}
