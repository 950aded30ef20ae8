function transform(user, options, scimUser) {
  user.username = scimUser.userName;
}
