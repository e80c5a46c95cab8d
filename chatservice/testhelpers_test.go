package chatservice

import "clusterchat/model"

func testMessage(group bool) model.Message {
	m := model.Message{Conv: model.Direct(1, 2), Seq: 3, From: 1, FromName: "ann", Body: "hi", CID: "c1", Time: 1000}
	if group {
		m.Conv = model.GroupConv(9)
	}
	return m
}
