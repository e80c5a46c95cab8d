package shell

import (
	"sort"
	"strconv"
	"strings"
)

// complete is the terminal's tab completion: command names, then friend or
// group ids for the commands that take one.
func (sh *shell) complete(line string, pos int, key rune) (string, int, bool) {
	if key != '\t' {
		return "", 0, false
	}
	prefix, suffix := line[:pos], line[pos:]
	sh.mu.Lock()
	loggedIn := sh.sess != nil
	var cands []string
	name, arg, hasArg := strings.Cut(prefix, ":")
	if !hasArg {
		for _, sp := range specs {
			if (loggedIn && sp.after || !loggedIn && sp.login) && strings.HasPrefix(sp.name, strings.ToLower(name)) {
				c := sp.name
				if sp.shape != shapeNone && sp.shape != shapeTextOpt {
					c += ":"
				}
				cands = append(cands, c)
			}
		}
	} else if !strings.Contains(arg, ":") && loggedIn {
		ids := sh.idsFor(strings.ToLower(name))
		sp := specByName[strings.ToLower(name)]
		for _, id := range ids {
			s := strconv.FormatInt(id, 10)
			if strings.HasPrefix(s, arg) {
				if sp != nil && (sp.shape == shapeIDText) {
					s += ":"
				}
				cands = append(cands, name+":"+s)
			}
		}
	}
	sh.mu.Unlock()
	if len(cands) == 0 {
		return "", 0, false
	}
	sort.Strings(cands)
	common := cands[0]
	for _, c := range cands[1:] {
		for !strings.HasPrefix(c, common) {
			common = common[:len(common)-1]
		}
	}
	if len(cands) > 1 && len(common) <= len(prefix) {
		sh.ui.Print(strings.Join(cands, "  ") + "\n")
		return "", 0, false
	}
	return common + suffix, len(common), true
}

// idsFor returns the ids a command's argument can be completed with.
// sh.mu is held.
func (sh *shell) idsFor(cmd string) []int64 {
	switch cmd {
	case "chat", "history", "delfriend":
		ids := sortedKeys(sh.friends)
		if cmd == "delfriend" {
			ids = append(ids, sortedKeys(sh.requests)...)
		}
		return ids
	case "accept", "addfriend":
		return sortedKeys(sh.requests)
	case "groupchat", "ghistory", "quitgroup", "deletegroup", "list":
		return sortedKeys(sh.groups)
	}
	return nil
}
