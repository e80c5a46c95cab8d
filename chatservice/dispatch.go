package chatservice

import "clusterchat/chatservice/protocol"

// dispatchTable is the one place where request msgids meet their handlers.
// A msgid of 1–99 not listed here is answered with errno 400.
func (s *Service) dispatchTable() map[int]handler {
	return map[int]handler{
		protocol.Login:        s.handleLogin,
		protocol.Reg:          s.handleReg,
		protocol.Logout:       s.handleLogout,
		protocol.Ping:         s.handlePing,
		protocol.OneChat:      s.handleOneChat,
		protocol.AddFriend:    s.handleAddFriend,
		protocol.AcceptFriend: s.handleAcceptFriend,
		protocol.DelFriend:    s.handleDelFriend,
		protocol.CreateGroup:  s.handleCreateGroup,
		protocol.JoinGroup:    s.handleJoinGroup,
		protocol.QuitGroup:    s.handleQuitGroup,
		protocol.DeleteGroup:  s.handleDeleteGroup,
		protocol.GroupChat:    s.handleGroupChat,
		protocol.GroupMembers: s.handleGroupMembers,
		protocol.List:         s.handleList,
		protocol.FindGroups:   s.handleFindGroups,
		protocol.FindUsers:    s.handleFindUsers,
		protocol.History:      s.handleHistory,
		protocol.AckMsgs:      s.handleAck,
		protocol.SetName:      s.handleSetName,
	}
}
