package sqlstore

import "testing"

// TestInsertChunk: the chunks of a run add up to it, each is a prepared
// size within the bound, and a run of up to 32 rows is one statement.
func TestInsertChunk(t *testing.T) {
	maxSize := len(insertSizes) - 1
	for n := 1; n <= 600; n++ {
		left, stmts := n, 0
		for left > 0 {
			rows, size := insertChunk(left, maxSize)
			if rows < 1 || rows > left || insertSizes[size] != rows {
				t.Fatalf("run %d: chunk of %d rows (size index %d) with %d left", n, rows, size, left)
			}
			left -= rows
			stmts++
		}
		if n <= 32 && stmts != 1 {
			t.Errorf("run of %d rows: %d INSERTs, want 1", n, stmts)
		}
		if n <= 256 && stmts > 3 {
			t.Errorf("run of %d rows: %d INSERTs, want at most 3", n, stmts)
		}
	}
	// A dialect that prepares single-row INSERTs only (SQLite).
	for n := 1; n <= 5; n++ {
		if rows, size := insertChunk(n, 0); rows != 1 || size != 0 {
			t.Errorf("insertChunk(%d, 0) = %d, %d; want 1 row", n, rows, size)
		}
	}
}
