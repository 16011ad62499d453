import ArgumentParser

/// `contextstore`: the server and the command-line client of ContextStore.
@main
struct ContextStoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "contextstore",
        abstract: "A vector memory database server for LLM applications.",
        subcommands: [
            ServeCommand.self, AddCommand.self, SearchCommand.self, PromptCommand.self, GetCommand.self,
            ListCommand.self,
            SessionsCommand.self, UsersCommand.self, UpdateCommand.self, DeleteCommand.self,
            ForgetCommand.self, FeedbackCommand.self, StatsCommand.self, MetricsCommand.self, KeysCommand.self,
            MCPCommand.self,
            SlowRequestsCommand.self, PingCommand.self,
            HelloCommand.self, EmbedCommand.self,
            ImportCommand.self, ExportCommand.self, BenchCommand.self, CheckCommand.self, BackupCommand.self,
            SpecCommand.self,
        ]
    )
}
