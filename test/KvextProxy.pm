# A TCP proxy for kvext's replication TAP tests (test/t/156_*.pl): it
# forwards 127.0.0.1:<listen port> to 127.0.0.1:<target port> in a child
# process, and the test makes the network misbehave through it:
#
#	my $p = KvextProxy->new(target_port => $node->port);
#	... point a peer's conninfo at port $p->port ...
#	$p->cut;			close every connection at once, with a reset (RST)
#	$p->delay(200);		hold every chunk 200 ms before passing it on
#	$p->pause;			stop moving bytes (connections stay open, new ones
#						are accepted but carry nothing)
#	$p->resume;			move bytes again (what was held is delivered)
#	$p->stats;			{ accepted => connections so far, cuts => connections
#						cut, bytes => bytes forwarded }
#	$p->stop;
#
# Each command waits for the child's answer, so when it returns the proxy
# already acts on it (the connections are cut, the pause holds).  The
# listening socket is bound in the parent before the fork, so a peer may
# connect as soon as new() returns.

package KvextProxy;

use strict;
use warnings;

use IO::Handle;
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Socket qw(SOL_SOCKET SO_LINGER IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time);

# new(target_port => P, [listen_port => Q]): a started proxy
sub new
{
	my ($class, %a) = @_;
	my $target = $a{target_port} or die "KvextProxy: target_port needed";
	my $listen = IO::Socket::INET->new(
		LocalAddr => '127.0.0.1',
		LocalPort => $a{listen_port} // 0,
		Proto     => 'tcp',
		Listen    => 64,
		ReuseAddr => 1) or die "KvextProxy: cannot listen: $@";
	pipe(my $cmd_r, my $cmd_w) or die "pipe: $!";
	pipe(my $ack_r, my $ack_w) or die "pipe: $!";
	$cmd_w->autoflush(1);
	$ack_w->autoflush(1);
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		close $cmd_w;
		close $ack_r;
		$SIG{PIPE} = 'IGNORE';
		# never run the test's END blocks (they stop the servers)
		eval { child_loop($listen, $target, $cmd_r, $ack_w); };
		POSIX::_exit(0);
	}
	close $cmd_r;
	close $ack_w;
	my $self = bless {
		pid    => $pid,
		port   => $listen->sockport,
		target => $target,
		cmd    => $cmd_w,
		ack    => $ack_r
	}, $class;
	close $listen;
	return $self;
}

sub port { return $_[0]->{port}; }

# send one command line, return the child's one-line answer
sub command
{
	my ($self, $cmd) = @_;
	my $fh = $self->{cmd};
	print $fh "$cmd\n" or die "KvextProxy: command '$cmd': $!";
	my $ack = readline($self->{ack});
	die "KvextProxy: no answer to '$cmd'" unless defined $ack;
	chomp $ack;
	return $ack;
}

sub cut    { return $_[0]->command('cut'); }
sub pause  { return $_[0]->command('pause'); }
sub resume { return $_[0]->command('resume'); }

sub delay
{
	my ($self, $ms) = @_;
	return $self->command("delay $ms");
}

sub stats
{
	my ($self) = @_;
	my %s = map { split /=/, $_, 2 } split / /, $self->command('stats');
	return \%s;
}

sub stop
{
	my ($self) = @_;
	return unless $self->{pid};
	eval { $self->command('quit'); };
	waitpid($self->{pid}, 0);
	$self->{pid} = undef;
	return;
}

sub DESTROY
{
	my ($self) = @_;
	if ($self->{pid})
	{
		kill 'KILL', $self->{pid};
		waitpid($self->{pid}, 0);
	}
}

# ---------------------------------------------------------------------------
# the child: one select loop over the listener, the command pipe and every
# connection pair.  A pair is { a => client side, b => target side,
# q => { a => [[due, bytes], ...] from a, b => ... }, out => { a => bytes
# to write to a, b => ... } }.

sub child_loop
{
	my ($listen, $target, $cmd_r, $ack_w) = @_;
	my @pairs;
	my ($delay, $paused, $accepted, $cuts, $bytes) = (0, 0, 0, 0, 0);
	my $cmdbuf = '';
	my $other = { a => 'b', b => 'a' };

	my $close_pair = sub {
		my ($p, $reset) = @_;
		for my $s ($p->{a}, $p->{b})
		{
			next unless $s;
			setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if $reset;
			close $s;
		}
		$p->{dead} = 1;
	};

	while (1)
	{
		@pairs = grep { !$_->{dead} } @pairs;
		my $now = time;
		my $timeout = 0.2;
		my $rsel = IO::Select->new($listen, $cmd_r);
		my $wsel = IO::Select->new;
		my %by_fd;
		for my $p (@pairs)
		{
			for my $side ('a', 'b')
			{
				my $s = $p->{$side};
				$by_fd{ fileno($s) } = [ $p, $side ];
				next if $paused;
				$rsel->add($s);
				$wsel->add($s) if length $p->{out}{$side};
				if (@{ $p->{q}{$side} })
				{
					my $wait = $p->{q}{$side}[0][0] - $now;
					$timeout = $wait if $wait < $timeout;
				}
			}
		}
		$timeout = 0 if $timeout < 0;
		my ($r, $w) = IO::Select->select($rsel, $wsel, undef, $timeout);

		for my $s (@{ $r // [] })
		{
			if ($s == $cmd_r)
			{
				my $n = sysread($cmd_r, my $buf, 4096);
				return unless $n;    # the test is gone
				$cmdbuf .= $buf;
				while ($cmdbuf =~ s/^([^\n]*)\n//)
				{
					my $cmd = $1;
					my $ans = 'ok';
					if ($cmd eq 'cut')
					{
						$cuts += scalar(grep { !$_->{dead} } @pairs);
						$close_pair->($_, 1) for @pairs;
						@pairs = ();
						%by_fd = ();
					}
					elsif ($cmd =~ /^delay (\d+)$/) { $delay = $1 / 1000.0; }
					elsif ($cmd eq 'pause') { $paused = 1; }
					elsif ($cmd eq 'resume') { $paused = 0; }
					elsif ($cmd eq 'stats')
					{
						$ans = "accepted=$accepted cuts=$cuts bytes=$bytes";
					}
					elsif ($cmd eq 'quit')
					{
						$close_pair->($_, 0) for @pairs;
						print $ack_w "ok\n";
						return;
					}
					else { $ans = "unknown command: $cmd"; }
					print $ack_w "$ans\n";
				}
			}
			elsif ($s == $listen)
			{
				my $a = $listen->accept or next;
				my $b = IO::Socket::INET->new(
					PeerAddr => '127.0.0.1',
					PeerPort => $target,
					Proto    => 'tcp');
				if (!$b)
				{
					setsockopt($a, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
					close $a;
					next;
				}
				$accepted++;
				for my $x ($a, $b)
				{
					$x->blocking(0);
					setsockopt($x, IPPROTO_TCP, TCP_NODELAY, 1);
				}
				push @pairs,
				  { a => $a, b => $b, q => { a => [], b => [] }, out => { a => '', b => '' } };
			}
			else
			{
				my $e = $by_fd{ fileno($s) } or next;
				my ($p, $side) = @$e;
				next if $p->{dead};
				my $n = sysread($s, my $buf, 65536);
				if (!defined $n)
				{
					next if $!{EAGAIN} || $!{EINTR};
					$close_pair->($p, 1);
				}
				elsif ($n == 0)
				{
					# one side closed: so does the other (a TCP half-close
					# is of no use to libpq)
					$close_pair->($p, 0);
				}
				else
				{
					push @{ $p->{q}{$side} }, [ time + $delay, $buf ];
				}
			}
		}

		# move what is due to the other side's output, write what can be
		$now = time;
		for my $p (@pairs)
		{
			next if $p->{dead} || $paused;
			for my $side ('a', 'b')
			{
				my $q = $p->{q}{$side};
				while (@$q && $q->[0][0] <= $now)
				{
					$p->{out}{ $other->{$side} } .= (shift @$q)->[1];
				}
			}
			for my $side ('a', 'b')
			{
				next unless length $p->{out}{$side};
				my $n = syswrite($p->{$side}, $p->{out}{$side});
				if (!defined $n)
				{
					next if $!{EAGAIN} || $!{EINTR};
					$close_pair->($p, 1);
					last;
				}
				substr($p->{out}{$side}, 0, $n) = '';
				$bytes += $n;
			}
		}
	}
}

1;
