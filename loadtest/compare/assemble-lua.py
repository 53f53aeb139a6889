import sys, re, os
root = sys.argv[1]; name = sys.argv[2]
out = []
for line in open(os.path.join(root, name + '.lua')):
    m = re.match(r'^--!include (\w+)\s*$', line)
    if m:
        out.append(open(os.path.join(root, 'lib', m.group(1) + '.lua')).read())
    else:
        out.append(line)
sys.stdout.write(''.join(out))
