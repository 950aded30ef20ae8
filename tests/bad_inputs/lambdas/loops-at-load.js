while (true) {}
function convert(user, options, scimUser) {}
