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
