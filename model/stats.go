package model

// WriterStats are counters of a store's batching writer since it was opened
// (model/sqlite and model/mysql offer them through a Stats method; the Store
// interface does not require it). A caller that wants them tests for
//
//	interface{ Stats() model.WriterStats }
type WriterStats struct {
	// Batches is the number of batch transactions run (committed or not).
	Batches int64
	// Messages is the number of messages stored (retries not counted).
	Messages int64
	// Dups is the number of retries answered with the original message.
	Dups int64
	// Acks is the number of AckMessages calls that the writer ran.
	Acks int64
	// Failed is the number of StoreMessage and AckMessages calls that failed
	// with their whole transaction (the database unavailable), not with an
	// error of their own.
	Failed int64
}

// CheckpointStats are counters of an SQLite store's WAL checkpoints since it
// was opened (model/sqlite offers them through a CheckpointStats method).
// A checkpoint copies committed pages from the write-ahead log into the
// database file; the writer's own checkpoints, run between two batches so
// that the log can start over, hold up the messages queued meanwhile.
type CheckpointStats struct {
	// Background is the number of passive checkpoints the background
	// checkpointer ran, BackgroundSeconds their total time.
	Background        int64
	BackgroundSeconds float64
	// Restarts is the number of checkpoints the writer ran between batches
	// to let the log start over, RestartSeconds their total time.
	Restarts       int64
	RestartSeconds float64
	// Busy counts the checkpoints (of either kind) that found another one
	// running and copied nothing; Errors those that failed.
	Busy   int64
	Errors int64
	// WALFrames is the log's size, in frames (pages), at the last
	// checkpoint.
	WALFrames int64
}
