package shell

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Command is one parsed shell command line.
type Command struct {
	Name string // canonical command name ("chat", "addfriend", ...)
	ID   int64  // the friend, user or group id, when the command takes one
	Text string // the message, group name, search prefix, new name, or login name
	Desc string // group description (creategroup), password (login/register)
	N    int    // history: number of messages (0: default)
}

// spec describes one command: its argument shape and help text.
type spec struct {
	name  string
	args  string // usage after the name
	help  string
	shape int
	login bool // available before login (start screen)
	after bool // available after login
}

// Argument shapes.
const (
	shapeNone       = iota // name
	shapeID                // name:id
	shapeIDText            // name:id:text (text may contain ':')
	shapeText              // name:text (text may contain ':', not empty)
	shapeTextOpt           // name[:text]
	shapeNameDesc          // name:groupname[:groupdesc]
	shapeIDN               // name:id[:n]
	shapeCredential        // name:who:password
)

// specs is the command table, in the order help lists it.
var specs = []spec{
	{name: "help", help: "show this help", shape: shapeNone, login: true, after: true},
	{name: "chat", args: ":friendid:message", help: "send a message to a friend", shape: shapeIDText, after: true},
	{name: "groupchat", args: ":groupid:message", help: "send a message to a group", shape: shapeIDText, after: true},
	{name: "addfriend", args: ":userid", help: "ask a user to be friends (or accept their request)", shape: shapeID, after: true},
	{name: "accept", args: ":userid", help: "accept a pending friend request", shape: shapeID, after: true},
	{name: "delfriend", args: ":userid", help: "end a friendship, or decline/withdraw a request", shape: shapeID, after: true},
	{name: "creategroup", args: ":groupname:groupdesc", help: "create a group (you own it)", shape: shapeNameDesc, after: true},
	{name: "joingroup", args: ":groupid", help: "join a group", shape: shapeID, after: true},
	{name: "quitgroup", args: ":groupid", help: "leave a group", shape: shapeID, after: true},
	{name: "deletegroup", args: ":groupid", help: "delete a group you own", shape: shapeID, after: true},
	{name: "list", args: ":groupid", help: "list a group's members", shape: shapeID, after: true},
	{name: "history", args: ":friendid[:n]", help: "show the last n (default 20) messages with a friend", shape: shapeIDN, after: true},
	{name: "ghistory", args: ":groupid[:n]", help: "show the last n (default 20) messages of a group", shape: shapeIDN, after: true},
	{name: "findusers", args: ":prefix", help: "find users by name prefix", shape: shapeText, after: true},
	{name: "findgroups", args: "[:prefix]", help: "find groups by name prefix", shape: shapeTextOpt, after: true},
	{name: "nick", args: ":newname", help: "change your name", shape: shapeText, after: true},
	{name: "showme", help: "show your friends, groups and requests (as known here)", shape: shapeNone, after: true},
	{name: "updatelist", help: "fetch friends, groups and requests from the server", shape: shapeNone, after: true},
	{name: "logout", help: "log out (revokes this login) and return to the start screen", shape: shapeNone, after: true},
	{name: "login", args: ":id-or-name:password", help: "log in (all digits means an id)", shape: shapeCredential, login: true},
	{name: "register", args: ":name:password", help: "create an account, then log in", shape: shapeCredential, login: true},
	{name: "quit", help: "leave the program", shape: shapeNone, login: true, after: true},
}

var specByName = func() map[string]*spec {
	m := make(map[string]*spec, len(specs))
	for i := range specs {
		m[specs[i].name] = &specs[i]
	}
	return m
}()

// ErrEmpty is returned by Parse for a blank line.
var ErrEmpty = errors.New("empty line")

// Parse parses one command line such as "chat:2:hello". Leading and trailing
// white space of the line is ignored; the message text keeps its inner
// spacing.
func Parse(line string) (Command, error) {
	line = strings.TrimSpace(line)
	if line == "" {
		return Command{}, ErrEmpty
	}
	name, rest, hasArgs := strings.Cut(line, ":")
	name = strings.ToLower(strings.TrimSpace(name))
	sp := specByName[name]
	if sp == nil {
		return Command{}, fmt.Errorf("unknown command %q (type help)", name)
	}
	cmd := Command{Name: sp.name}
	usage := func() error { return fmt.Errorf("usage: %s%s", sp.name, sp.args) }
	parseID := func(s string) (int64, error) {
		s = strings.TrimSpace(s)
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id <= 0 {
			return 0, fmt.Errorf("%q is not an id (a positive number); usage: %s%s", s, sp.name, sp.args)
		}
		return id, nil
	}
	var err error
	switch sp.shape {
	case shapeNone:
		if hasArgs && strings.TrimSpace(rest) != "" {
			return Command{}, fmt.Errorf("%s takes no arguments", sp.name)
		}
	case shapeID:
		if !hasArgs {
			return Command{}, usage()
		}
		if cmd.ID, err = parseID(rest); err != nil {
			return Command{}, err
		}
	case shapeIDText:
		idStr, text, ok := strings.Cut(rest, ":")
		if !hasArgs || !ok {
			return Command{}, usage()
		}
		if cmd.ID, err = parseID(idStr); err != nil {
			return Command{}, err
		}
		if strings.TrimSpace(text) == "" {
			return Command{}, fmt.Errorf("empty message; usage: %s%s", sp.name, sp.args)
		}
		cmd.Text = text
	case shapeText:
		cmd.Text = strings.TrimSpace(rest)
		if !hasArgs || cmd.Text == "" {
			return Command{}, usage()
		}
	case shapeTextOpt:
		cmd.Text = strings.TrimSpace(rest)
	case shapeNameDesc:
		gname, desc, _ := strings.Cut(rest, ":")
		cmd.Text, cmd.Desc = strings.TrimSpace(gname), strings.TrimSpace(desc)
		if !hasArgs || cmd.Text == "" {
			return Command{}, usage()
		}
	case shapeIDN:
		if !hasArgs {
			return Command{}, usage()
		}
		idStr, nStr, hasN := strings.Cut(rest, ":")
		if cmd.ID, err = parseID(idStr); err != nil {
			return Command{}, err
		}
		if hasN {
			n, err := strconv.Atoi(strings.TrimSpace(nStr))
			if err != nil || n < 1 || n > 1000 {
				return Command{}, fmt.Errorf("%q is not a count from 1 to 1000; usage: %s%s", nStr, sp.name, sp.args)
			}
			cmd.N = n
		}
	case shapeCredential:
		who, pass, ok := strings.Cut(rest, ":")
		who = strings.TrimSpace(who)
		if !hasArgs || !ok || who == "" || pass == "" {
			return Command{}, usage()
		}
		cmd.Text, cmd.Desc = who, pass
		if sp.name == "login" && isDigits(who) {
			cmd.ID, _ = strconv.ParseInt(who, 10, 64)
		}
	}
	return cmd, nil
}

func isDigits(s string) bool {
	if s == "" || len(s) > 18 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// helpText returns the command list for the start screen (loggedIn false)
// or after login.
func helpText(loggedIn bool) string {
	var b strings.Builder
	for _, sp := range specs {
		if loggedIn && !sp.after || !loggedIn && !sp.login {
			continue
		}
		fmt.Fprintf(&b, "  %-34s %s\n", sp.name+sp.args, sp.help)
	}
	return b.String()
}
